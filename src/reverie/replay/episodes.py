"""The experience dataset (section 2.1): episodes on disk, FIFO capacity, sequence sampling.

Shapes are batch-major: a stored episode holds arrays ``[T, ...]``; ``sample`` returns
``[B, L, ...]``. A step is one agent step of one environment:

- observation keys: ``image`` uint8 ``[H, W, C]`` and/or ``vector`` float32 ``[D]``;
- ``action`` float32 ``[A]``: the action that *led to* this observation (zeros on ``is_first``);
- ``reward`` float32 (raw), ``is_first``, ``is_last``, ``is_terminal`` bool.

On disk (``LOGDIR/replay/``) every file is one chunk of one episode, written atomically::

    ep<episode:06d>-<chunk:04d>-<first_global_step:012d>-<last_global_step:012d>-<length>.npz

A running episode is written every ``chunk`` steps, on ``flush()`` and when it ends, so a
27,000-step Atari episode is on disk (and sampleable from memory) long before it ends, and
no file is ever rewritten. The global step (the number of ``add`` calls so far) in the name
lets a resume from a checkpoint taken at step S discard what a killed run wrote after S.

Resume protocol (what the training loop does)::

    replay.flush(); save_checkpoint(..., meta={"replay": replay.state_dict(), ...})
    ...
    state = checkpoint.meta["replay"]
    replay = Replay.load(directory, capacity, chunk, seed, upto_step=state["step"])
    replay.load_state_dict(state)   # sampling continues exactly as before the checkpoint

Evicted episodes leave memory at once but their files are deleted at the next ``flush()``
(before the next checkpoint): a run killed after a checkpoint still finds on disk every
episode the checkpoint's replay held, and ``load`` re-applies the FIFO rule, which gives the
same set of episodes as applying it step by step (both keep the longest suffix that fits).
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import CheckpointError
from reverie.utils import atomic_write_bytes

__all__ = ["Replay"]

_NAME = re.compile(r"ep(\d+)-(\d+)-(\d+)-(\d+)-(\d+)\.npz")
_BOOL_KEYS = ("is_first", "is_last", "is_terminal")


@dataclass
class _Chunk:
    """One file: rows ``[first, last]`` (global steps, inclusive) of episode ``episode``."""

    path: Path
    episode: int
    index: int
    first: int
    last: int

    @classmethod
    def parse(cls, path: Path) -> _Chunk | None:
        match = _NAME.fullmatch(path.name)
        if not match:
            return None
        episode, index, first, last, length = map(int, match.groups())
        return cls(path, episode, index, first, last) if last - first + 1 == length else None

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass
class _Episode:
    """One episode in memory: ``data[key]`` is a buffer ``[capacity, ...]`` whose first
    ``length`` rows are valid (the running episode grows it; a closed one is trimmed)."""

    id: int
    first_step: int  # global step of row 0
    data: dict[str, np.ndarray]
    length: int
    saved: int = 0  # rows already on disk
    files: list[Path] = field(default_factory=list)


class Replay:
    """FIFO dataset of episodes with uniform sequence sampling (Hafner et al. 2021, sec. 2.1).

    ``capacity`` is in agent steps; the oldest whole episodes are dropped (never the running
    one). ``chunk`` is the number of steps of a running episode per file. ``seed`` seeds the
    sampling RNG (numpy PCG64), so same seed and same adds give the same batches.
    """

    def __init__(self, directory: str | Path, capacity: int, chunk: int = 1024, seed: int = 0):
        self._setup(directory, capacity, chunk, seed)
        if any(self.directory.glob("ep*.npz")):
            raise FileExistsError(
                f"{self.directory} already holds episodes; use Replay.load(...) to resume from them "
                "(upto_step=0 discards them)"
            )

    def _setup(self, directory: str | Path, capacity: int, chunk: int, seed: int) -> None:
        if capacity < 1 or chunk < 1:
            raise ValueError(f"replay capacity and chunk must be positive, got {capacity} and {chunk}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity, self.chunk = capacity, chunk
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._episodes: list[_Episode] = []  # storage order = episode id order
        self._running: _Episode | None = None
        self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._num_steps = 0  # steps held now
        self._step = 0  # global step: steps ever added
        self._next_id = 0
        self._evicted_files: list[Path] = []  # deleted at the next flush()

    # ------------------------------------------------------------------ adding
    def add(self, step: dict[str, Any]) -> None:
        """Append one agent step. ``is_first`` starts an episode (closing a running one that
        never saw ``is_last``); ``is_last`` closes the episode and writes its tail."""
        if not self._spec:
            self._spec = _spec_of(step)
        if set(step) != set(self._spec):
            raise ValueError(f"replay step keys {sorted(step)} differ from the stored keys {sorted(self._spec)}")
        if bool(step["is_first"]):
            if self._running is not None:
                self._close()
            self._running = _Episode(self._next_id, self._step, self._empty(64), 0)
            self._next_id += 1
            self._episodes.append(self._running)
        elif self._running is None:
            raise ValueError("replay step has is_first=False but no episode is running; "
                             "the first step of every episode must have is_first=True")
        episode = self._running
        if episode.length == len(episode.data["is_first"]):
            self._grow(episode)
        for key, (shape, _) in self._spec.items():
            value = step[key]
            if np.shape(value) != shape:  # assignment would broadcast a scalar silently
                raise ValueError(f"replay step {key!r} has shape {np.shape(value)}, expected {shape}")
            episode.data[key][episode.length] = value
        episode.length += 1
        self._num_steps += 1
        self._step += 1
        if bool(step["is_last"]):
            self._close()
        elif episode.length - episode.saved >= self.chunk:
            self._write(episode)
        self._evict()

    def flush(self) -> None:
        """Write the running episode's unsaved tail and delete evicted episodes' files.
        Call it before every checkpoint."""
        if self._running is not None and self._running.length > self._running.saved:
            self._write(self._running)
        for path in self._evicted_files:
            path.unlink(missing_ok=True)
        self._evicted_files = []

    def _empty(self, rows: int) -> dict[str, np.ndarray]:
        return {key: np.empty((rows, *shape), dtype) for key, (shape, dtype) in self._spec.items()}

    def _grow(self, episode: _Episode) -> None:
        # Doubling keeps appends amortised O(1); the spare rows are trimmed when it closes.
        bigger = self._empty(2 * len(episode.data["is_first"]))
        for key, buffer in bigger.items():
            buffer[: episode.length] = episode.data[key][: episode.length]
        episode.data = bigger

    def _close(self) -> None:
        episode, self._running = self._running, None
        if episode.length > episode.saved:
            self._write(episode)
        if len(episode.data["is_first"]) > episode.length:  # keep exactly one copy, no spare rows
            episode.data = {key: value[: episode.length].copy() for key, value in episode.data.items()}

    def _write(self, episode: _Episode) -> None:
        lo, hi = episode.saved, episode.length
        name = _chunk_name(episode.id, len(episode.files), episode.first_step + lo, episode.first_step + hi)
        _write_npz(self.directory / name, {key: value[lo:hi] for key, value in episode.data.items()})
        episode.files.append(self.directory / name)
        episode.saved = hi

    def _evict(self) -> None:
        while self._num_steps > self.capacity and len(self._episodes) > 1:
            episode = self._episodes.pop(0)  # the running episode is always the last one
            self._num_steps -= episode.length
            # Newest chunk first: a kill during flush() leaves a prefix of the episode, still readable.
            self._evicted_files.extend(reversed(episode.files))

    # ---------------------------------------------------------------- sampling
    def sample(self, batch: int, length: int, prioritize_ends: bool = False, *, clip_start: bool = True,
               ongoing: bool = True, minlen: int = 0) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` steps: ``{key: [B, L, ...]}``, dtypes as stored.

        Each sequence picks an episode uniformly among the sampleable ones (``sampleable``) and
        a start in it (``start``). An episode shorter than ``L`` is continued with the next
        stored episodes (wrapping to the oldest), whose first step has ``is_first=True``.

        The first step of every sequence is marked ``is_first`` (official ``replay.py``,
        ``_sample_sequence``): training starts each sequence from the RSSM's zero state, the
        state acting starts every episode from, never from an unrelated sequence's state.
        """
        if self._num_steps < length:
            raise ValueError(f"replay holds {self._num_steps} steps, fewer than the sequence length "
                             f"L={length}; collect more steps (run.prefill) before sampling")
        episodes, choices = self._episodes, self.sampleable(ongoing, minlen)
        if not choices:
            raise ValueError(f"replay holds no episode to sample with ongoing={ongoing} and minlen={minlen} "
                             "(a finished one, of at least minlen agent steps); collect more episodes first")
        out = {key: np.empty((batch, length, *shape), dtype) for key, (shape, dtype) in self._spec.items()}
        for b in range(batch):
            index = choices[int(self._rng.integers(len(choices)))]
            episode = episodes[index]
            start = self.start(episode.length, length, prioritize_ends, clip_start)
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

    def start(self, total: int, length: int, prioritize_ends: bool, clip_start: bool) -> int:
        """A start index in an episode of ``total`` rows (the reset step included), drawn as the
        config says (``ReplayConfig.prioritize_ends``, ``clip_start``): with ``prioritize_ends``
        uniform in ``[0, total]`` and clipped to ``total − L`` (official, ``upper = total − L + 1
        + L``); else with ``clip_start`` uniform in ``[0, total)`` and clipped (paper sec. 2.1);
        else uniform over the ``total − L + 1`` starts that fit (official, ``upper = total − L +
        1``). An episode shorter than ``L`` starts at 0 (and continues into the next)."""
        if prioritize_ends or clip_start:
            start = int(self._rng.integers(total + int(prioritize_ends)))
        else:
            start = int(self._rng.integers(max(total - length + 1, 1)))
        return max(0, min(start, total - length))

    def sampleable(self, ongoing: bool = True, minlen: int = 0) -> list[int]:
        """Indices of the episodes a sequence may start in: finished ones with at least ``minlen``
        agent steps (rows − 1, as the official ``eplen``), and the running one too if ``ongoing``."""
        return [i for i, episode in enumerate(self._episodes)
                if episode.length - 1 >= minlen and (ongoing or episode is not self._running)]

    def can_sample(self, length: int, ongoing: bool = True, minlen: int = 0) -> bool:
        """Whether ``sample`` can give sequences of ``length``: a sampleable episode, and ``length``
        steps held (a short episode continues into the next)."""
        return self._num_steps >= length and bool(self.sampleable(ongoing, minlen))

    # ----------------------------------------------------------- bookkeeping
    @property
    def num_steps(self) -> int:
        """Steps held now (at most ``capacity`` plus the running episode's overshoot)."""
        return self._num_steps

    @property
    def num_episodes(self) -> int:
        """Episodes held now, the running one included."""
        return len(self._episodes)

    @property
    def step(self) -> int:
        """Global step: the number of ``add`` calls over the whole run, evicted ones included."""
        return self._step

    def __len__(self) -> int:
        return self._num_steps

    def bytes_per_step(self) -> int:
        """Bytes of RAM one stored step takes (all keys, one copy), measured from the arrays."""
        return sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in self._spec.values())

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: counters, the sampling RNG, and the running episode's id and length."""
        return {"step": self._step, "next_id": self._next_id, "num_steps": self._num_steps,
                "num_episodes": len(self._episodes), "running": self._running_info(),
                "rng": self._rng.bit_generator.state}

    def _running_info(self) -> dict[str, int] | None:
        return None if self._running is None else {"id": self._running.id, "length": self._running.length}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters and the sampling RNG. Warns when the episodes found on disk do not
        match the checkpoint (a corrupt file, or no ``flush()`` before it): sampling then differs."""
        found = {"step": self._step, "num_steps": self._num_steps, "num_episodes": len(self._episodes),
                 "running": self._running_info()}
        expected = {key: state[key] for key in found}
        if found != expected:
            warnings.warn(f"replay in {self.directory} does not match the checkpoint: found {found}, "
                          f"expected {expected}; sampling will not repeat exactly", stacklevel=2)
        self._step, self._next_id = state["step"], state["next_id"]
        self._rng.bit_generator.state = state["rng"]

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, directory: str | Path, capacity: int, chunk: int = 1024, seed: int = 0,
             upto_step: int | None = None, strict: bool = False) -> Replay:
        """Rebuild the replay from ``directory``. Steps at global index ``>= upto_step`` (written
        after the checkpoint) are deleted; the episode running at ``upto_step`` is reopened so
        new steps append to it. ``*.tmp`` leftovers are deleted; corrupt files are reported
        with ``warnings.warn``, renamed ``*.corrupt`` and skipped (with the rest of their episode).
        ``upto_step=0`` deletes every episode: a run killed before its first checkpoint starts over.

        ``strict``: a chunk that exists but cannot be read raises ``CheckpointError`` naming it,
        before any file is deleted or cut (the resume of ``reverie train``); chunks missing
        from an episode (a corrupt one the user renamed) are still skipped with a warning."""
        replay = cls.__new__(cls)
        replay._setup(directory, capacity, chunk, seed)
        stale = list(replay.directory.glob("*.tmp"))  # pathlib's * also matches the hidden tmp names
        episodes: dict[int, list[_Chunk]] = {}
        for path in sorted(replay.directory.glob("ep*.npz")):
            chunk_file = _Chunk.parse(path)
            if chunk_file is None:
                warnings.warn(f"replay: ignoring {path}: not a replay chunk name", stacklevel=2)
            elif upto_step is not None and chunk_file.first >= upto_step:
                stale.append(path)  # written after the checkpoint; the resumed run writes it again
            else:
                episodes.setdefault(chunk_file.episode, []).append(chunk_file)
        cuts: list[tuple[Path, dict[str, np.ndarray], Path]] = []
        for episode_id in sorted(episodes):
            chunks = sorted(episodes[episode_id], key=lambda c: c.index)
            episode = replay._read_episode(chunks, upto_step, cuts, strict)
            if episode is not None:
                replay._episodes.append(episode)
                replay._num_steps += episode.length
        # Every chunk read: only now change files, so a refused load leaves the folder as it was.
        for path in stale:
            path.unlink(missing_ok=True)
        for path, part, straddling in cuts:
            _write_npz(path, part)
            straddling.unlink()  # only once the cut copy is safely on disk
        if replay._episodes:
            last = replay._episodes[-1]
            replay._step = last.first_step + last.length
            replay._next_id = last.id + 1
            if not last.data["is_last"][-1] and (upto_step is None or replay._step == upto_step):
                replay._running = last
        if upto_step is not None:
            replay._step = upto_step
        replay._evict()
        replay.flush()  # deletes the files of episodes evicted at load (they were evicted at upto_step too)
        return replay

    def _read_episode(self, chunks: list[_Chunk], upto_step: int | None,
                      cuts: list[tuple[Path, dict[str, np.ndarray], Path]], strict: bool) -> _Episode | None:
        """Concatenate an episode's chunks; a corrupt or missing chunk ends the episode there
        (the chunks after it would leave a gap). A chunk straddling ``upto_step`` is cut in
        memory and its cut copy appended to ``cuts`` (new path, arrays, old path) for ``load``."""
        parts, files = [], []
        for chunk_file in chunks:
            rows = sum(len(p["is_first"]) for p in parts)
            if chunk_file.index != len(files) or chunk_file.first != chunks[0].first + rows:
                problem = "a chunk before it is missing or corrupt"
            else:
                try:
                    part, problem = _read_npz(chunk_file.path, chunk_file.length, self._spec), None
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
                    problem = f"corrupt ({type(error).__name__}: {error})"
                    if strict:
                        raise CheckpointError(
                            f"replay chunk {chunk_file.path} is {problem}; the checkpoint at step {upto_step} needs "
                            f"it. Restore it from a backup, or rename it to {chunk_file.path.name}.corrupt to resume "
                            "without the rest of its episode (the run then differs from an uninterrupted one)"
                        ) from None
            if problem:
                warnings.warn(f"replay: skipping {chunk_file.path}: {problem}", stacklevel=3)
                chunk_file.path.replace(chunk_file.path.with_name(chunk_file.path.name + ".corrupt"))
                continue
            path = chunk_file.path
            if upto_step is not None and chunk_file.last >= upto_step:  # straddles the checkpoint
                part = {key: value[: upto_step - chunk_file.first] for key, value in part.items()}
                path = self.directory / _chunk_name(chunk_file.episode, chunk_file.index, chunk_file.first, upto_step)
                cuts.append((path, part, chunk_file.path))
            self._spec = self._spec or {key: (value.shape[1:], value.dtype) for key, value in part.items()}
            parts.append(part)
            files.append(path)
        if not parts:
            return None
        data = {key: np.concatenate([p[key] for p in parts]) for key in self._spec}
        length = len(data["is_first"])
        return _Episode(chunks[0].episode, chunks[0].first, data, length, saved=length, files=files)


def _chunk_name(episode: int, index: int, first: int, end: int) -> str:
    """File name of global steps ``[first, end)`` of an episode."""
    return f"ep{episode:06d}-{index:04d}-{first:012d}-{end - 1:012d}-{end - first}.npz"


def _spec_of(step: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
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


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_npz(path: Path, length: int, spec: dict) -> dict[str, np.ndarray]:
    """Load a chunk and check it against its name and the keys already loaded."""
    with np.load(path, allow_pickle=False) as file:  # never unpickle: object arrays are refused
        part = {key: file[key] for key in file.files}
    if spec and {key: (v.shape[1:], v.dtype) for key, v in part.items()} != spec:
        raise ValueError("its keys, shapes or dtypes differ from the other episodes'")
    if any(len(value) != length for value in part.values()):
        raise ValueError(f"its arrays do not hold the {length} steps its name says")
    return part


