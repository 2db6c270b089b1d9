"""Which windows of the stored episodes a batch holds: the episode (uniform among the
sampleable ones: ``ongoing``, ``minlen``) and the start in it (``prioritize_ends``,
``clip_start``, ``cross_episodes``), drawn from one seeded RNG in a fixed order, so that the same seed and the
same adds give the same batches. Batches are batch-major ``[B, L, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reverie.replay.disk import Spec
from reverie.replay.storage import Episode

__all__ = ["Sampler", "sampleable"]


def sampleable(episodes: Sequence[Episode], running: set[int], minlen: int) -> list[int]:
    """Indices of the episodes a sequence may start in: those with at least ``minlen`` agent
    steps (rows − 1, as the official ``eplen``) whose id is not in ``running``."""
    return [i for i, episode in enumerate(episodes) if episode.length - 1 >= minlen and episode.id not in running]


class Sampler:
    """Draws sequences from episodes with the numpy PCG64 generator ``rng`` seeded by ``seed``
    (its state is the sampling state a checkpoint saves)."""

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def sample(self, episodes: Sequence[Episode], choices: Sequence[int], spec: Spec, batch: int, length: int,
               prioritize_ends: bool, clip_start: bool, cross_episodes: bool = False) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` steps ``{key: [B, L, ...]}``: per sequence, an
        episode drawn uniformly among ``choices`` (indices into ``episodes``), then a start in
        it (``start``). A window running past the episode's end continues with the next stored
        episodes (wrapping to the oldest): only for episodes shorter than ``length``, or, with
        ``cross_episodes``, wherever the start falls. The first step of every sequence is ``is_first``."""
        out = {key: np.empty((batch, length, *shape), dtype) for key, (shape, dtype) in spec.items()}
        for b in range(batch):
            index = choices[int(self.rng.integers(len(choices)))]
            episode = episodes[index]
            start = self.start(episode.length, length, prioritize_ends, clip_start, cross_episodes)
            filled = 0
            while filled < length:
                n = min(length - filled, episode.length - start)
                for key, target in out.items():
                    target[b, filled : filled + n] = episode.data[key][start : start + n]
                filled += n
                index = (index + 1) % len(episodes)
                episode, start = episodes[index], 0
        out["is_first"][:, 0] = True
        return out

    def start(self, total: int, length: int, prioritize_ends: bool, clip_start: bool,
              cross_episodes: bool = False) -> int:
        """A start index in an episode of ``total`` rows (see ``Replay.start``)."""
        if cross_episodes:
            return int(self.rng.integers(total))
        if prioritize_ends or clip_start:
            start = int(self.rng.integers(total + int(prioritize_ends)))
        else:
            start = int(self.rng.integers(max(total - length + 1, 1)))
        return max(0, min(start, total - length))
