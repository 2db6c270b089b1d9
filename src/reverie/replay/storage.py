"""The episodes in memory: one running episode per worker, FIFO eviction of whole episodes,
and each episode's chunks written to disk as it grows (``reverie.replay.disk``).

Arrays are ``[T, ...]`` per episode; the step keys and dtypes are in ``reverie.replay.episodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reverie.replay import disk
from reverie.replay.disk import Recovered, Spec

__all__ = ["Episode", "EpisodeStore", "spec_of"]

_BOOL_KEYS = ("is_first", "is_last", "is_terminal")


@dataclass
class Episode:
    """One episode in memory: ``data[key]`` is a buffer ``[capacity, ...]`` whose first
    ``length`` rows are valid (a running episode grows it; a closed one is trimmed)."""

    id: int
    data: dict[str, np.ndarray]
    length: int
    last_step: int = -1  # global step of the last row
    unsaved_step: int = -1  # global step of row ``saved`` (the first not on disk), when there is one
    saved: int = 0  # rows already on disk
    files: list[Path] = field(default_factory=list)

    @property
    def open(self) -> bool:
        """Whether its last row is not ``is_last`` (a running episode, or one cut short)."""
        return not self.data["is_last"][self.length - 1]


class EpisodeStore:
    """Episodes in id order, at most ``capacity`` steps plus the running episodes' overshoot;
    a running episode is written to ``directory`` every ``chunk`` of its steps."""

    def __init__(self, directory: str | Path, capacity: int, chunk: int):
        if capacity < 1 or chunk < 1:
            raise ValueError(f"replay capacity and chunk must be positive, got {capacity} and {chunk}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity, self.chunk = capacity, chunk
        self.episodes: list[Episode] = []  # storage order = episode id order
        self.running: list[Episode | None] = []  # per worker
        self.spec: Spec = {}
        self.num_steps = 0  # steps held now
        self.step = 0  # global step: steps ever added
        self.next_id = 0
        self._evicted_files: list[Path] = []  # deleted at the next flush()

    # ------------------------------------------------------------------ adding
    def add(self, step: dict[str, Any], worker: int) -> None:
        """Append one step to ``worker``'s running episode (see ``Replay.add``)."""
        if worker < 0:
            raise ValueError(f"replay worker must be a non-negative environment index, got {worker}")
        if not self.spec:
            self.spec = spec_of(step)
        if set(step) != set(self.spec):
            raise ValueError(f"replay step keys {sorted(step)} differ from the stored keys {sorted(self.spec)}")
        episode = self._episode_for(step, worker)
        if episode.length == len(episode.data["is_first"]):
            self._grow(episode)
        for key, (shape, _) in self.spec.items():
            value = step[key]
            if np.shape(value) != shape:  # assignment would broadcast a scalar silently
                raise ValueError(f"replay step {key!r} has shape {np.shape(value)}, expected {shape}")
            episode.data[key][episode.length] = value
        if episode.saved == episode.length:
            episode.unsaved_step = self.step
        episode.last_step = self.step
        episode.length += 1
        self.num_steps += 1
        self.step += 1
        if bool(step["is_last"]):
            self._close(worker)
        elif episode.length - episode.saved >= self.chunk:
            self._write(episode)
        self.evict()

    def _episode_for(self, step: dict[str, Any], worker: int) -> Episode:
        """``worker``'s running episode, a new one when ``step`` is ``is_first`` (closing the
        running one that never saw ``is_last``)."""
        running = self.running[worker] if worker < len(self.running) else None
        if bool(step["is_first"]):
            if running is not None:
                self._close(worker)
            self.running.extend([None] * (worker + 1 - len(self.running)))
            running = self.running[worker] = Episode(self.next_id, self._empty(64), 0)
            self.next_id += 1
            self.episodes.append(running)
        elif running is None:
            on = f" on worker {worker}" if worker else ""
            raise ValueError(f"replay step has is_first=False but no episode is running{on}; "
                             "the first step of every episode must have is_first=True")
        return running

    def flush(self) -> None:
        """Write every running episode's unsaved tail and delete evicted episodes' files."""
        for episode in self.running:
            if episode is not None and episode.length > episode.saved:
                self._write(episode)
        for path in self._evicted_files:
            path.unlink(missing_ok=True)
        self._evicted_files = []

    def _empty(self, rows: int) -> dict[str, np.ndarray]:
        return {key: np.empty((rows, *shape), dtype) for key, (shape, dtype) in self.spec.items()}

    def _grow(self, episode: Episode) -> None:
        # Doubling keeps appends amortised O(1); the spare rows are trimmed when it closes.
        bigger = self._empty(2 * len(episode.data["is_first"]))
        for key, buffer in bigger.items():
            buffer[: episode.length] = episode.data[key][: episode.length]
        episode.data = bigger

    def _close(self, worker: int) -> None:
        episode, self.running[worker] = self.running[worker], None
        if episode.length > episode.saved:
            self._write(episode)
        if len(episode.data["is_first"]) > episode.length:  # keep exactly one copy, no spare rows
            episode.data = {key: value[: episode.length].copy() for key, value in episode.data.items()}

    def _write(self, episode: Episode) -> None:
        lo, hi = episode.saved, episode.length
        arrays = {key: value[lo:hi] for key, value in episode.data.items()}
        path = disk.write_chunk(self.directory, episode.id, len(episode.files), episode.unsaved_step,
                                episode.last_step, arrays)
        episode.files.append(path)
        episode.saved = hi

    # ---------------------------------------------------------------- eviction
    def running_ids(self) -> set[int]:
        return {episode.id for episode in self.running if episode is not None}

    def evict(self) -> None:
        """Drop the oldest whole episodes that are not running while more than ``capacity`` steps
        are held; their files go at the next ``flush()``."""
        while self.num_steps > self.capacity and len(self.episodes) > 1:
            running = self.running_ids()
            oldest = next((i for i, episode in enumerate(self.episodes) if episode.id not in running), None)
            if oldest is None:  # every episode held is running
                return
            episode = self.episodes.pop(oldest)
            self.num_steps -= episode.length
            # Newest chunk first: a kill during flush() leaves a prefix of the episode, still readable.
            self._evicted_files.extend(reversed(episode.files))

    # ------------------------------------------------------------------ resume
    def running_entries(self) -> list[dict[str, int] | None]:
        """``{"id", "length"}`` or ``None`` per worker, at least one entry."""
        entries = [None if e is None else {"id": e.id, "length": e.length} for e in self.running]
        return entries or [None]

    def restore(self, recovered: list[Recovered], spec: Spec, running: Sequence[int | None] | None,
                upto_step: int | None) -> None:
        """Hold the episodes read back from disk (``disk.read_directory``), reopen the running
        ones (``Replay.load``'s ``running``) and re-apply the FIFO rule."""
        self.spec = spec
        for item in recovered:
            length = len(item.data["is_first"])
            self.episodes.append(Episode(item.id, item.data, length, last_step=item.last_step, saved=length,
                                         files=item.files))
            self.num_steps += length
        if self.episodes:
            self.step = max(episode.last_step for episode in self.episodes) + 1
            self.next_id = self.episodes[-1].id + 1
        self.running = self._reopen(running, upto_step)
        if upto_step is not None:
            self.step = upto_step
        self.evict()
        self.flush()  # deletes the files of episodes evicted here (they were evicted at upto_step too)

    def _reopen(self, running: Sequence[int | None] | None, upto_step: int | None) -> list[Episode | None]:
        """The running episode per worker after a resume: the ids in ``running`` that are held
        and open, or without it the one-environment rule (see ``Replay.load``)."""
        if running is None:
            last = self.episodes[-1] if self.episodes else None
            reaches = last is not None and (upto_step is None or last.last_step + 1 == upto_step)
            return [last if reaches and last.open else None]
        held = {episode.id: episode for episode in self.episodes if episode.open}
        return [None if episode_id is None else held.get(episode_id) for episode_id in running]


def spec_of(step: dict[str, Any]) -> Spec:
    """Stored shape and dtype per key: flags as bool, action and reward as float32,
    float64 observations as float32, everything else (uint8 images) as given."""
    spec = {}
    for key, value in step.items():
        value = np.asarray(value)
        if key in _BOOL_KEYS:
            dtype = np.dtype(bool)
        elif key in ("action", "reward") or value.dtype == np.float64:
            dtype = np.dtype(np.float32)
        else:
            dtype = value.dtype
        spec[key] = (value.shape, dtype)
    missing = {"action", "reward", *_BOOL_KEYS} - set(spec)
    if missing:
        raise ValueError(f"replay step lacks {sorted(missing)}; see the Replay contract in docs/ARCHITECTURE.md")
    return spec
