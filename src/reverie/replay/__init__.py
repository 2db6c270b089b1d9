"""The experience dataset: episodes on disk, FIFO capacity, sequence sampling ``[B, L, ...]``."""

from reverie.replay.episodes import Replay

__all__ = ["Replay"]
