"""The experience dataset (section 2.1): episodes on disk, FIFO capacity, sequence sampling.

Shapes are batch-major: a stored episode holds arrays ``[T, ...]``; ``sample`` returns
``[B, L, ...]``. A step is one agent step of one environment:

- observation keys: ``image`` uint8 ``[H, W, C]`` and/or ``vector`` float32 ``[D]``;
- ``action`` float32 ``[A]``: the action that *led to* this observation (zeros on ``is_first``);
- ``reward`` float32 (raw), ``is_first``, ``is_last``, ``is_terminal`` bool.

N environments (``worker`` 0..N−1 in ``add``) each have their own running episode; the loop
adds their steps interleaved (each round: env 0's, env 1's, ...). Episode ids count episodes
in the order they start, whichever worker starts them; episodes are stored and sampled in
id order. One worker is the single-environment replay, file for file and draw for draw.

On disk (``LOGDIR/replay/``) every file is one chunk of one episode, written atomically::

    ep<episode:06d>-<chunk:04d>-<first_global_step:012d>-<last_global_step:012d>-<length>.npz

``first``/``last`` are the global steps (the index of the ``add`` call, over all workers) of
the chunk's first and last row. One worker's rows are contiguous (``length = last − first + 1``);
interleaved with other workers' they are not, so ``length ≤ last − first + 1`` and only the
chunk index tells that a chunk is missing. A running episode is written every ``chunk`` of its
steps, on ``flush()`` and when it ends, so a 27,000-step Atari episode is on disk (and
sampleable from memory) long before it ends, and no file is ever rewritten. The global steps
in the name let a resume from a checkpoint taken at step S discard what a killed run wrote after S.

Resume protocol (what the training loop does)::

    replay.flush(); save_checkpoint(..., meta={"replay": replay.state_dict(), ...})
    ...
    state = checkpoint.meta["replay"]
    replay = Replay.load(directory, capacity, chunk, seed, upto_step=state["step"],
                         running=Replay.running_ids(state))
    replay.load_state_dict(state)   # sampling continues exactly as before the checkpoint

``running`` tells ``load`` which open episode each worker was running (the disk does not say
which worker wrote an episode); without it ``load`` keeps the one-worker rule (the newest
episode is worker 0's if it is open and reaches ``upto_step``), exact for one worker only.
Because ``flush()`` wrote every running episode's tail, no chunk straddles the checkpoint; a
straddling chunk (a checkpoint taken without ``flush()``) is cut at ``upto_step`` when its rows
are contiguous, and otherwise dropped with a warning (refused with ``strict``): the steps of
an interleaved chunk before S cannot be told from those after it.

Evicted episodes leave memory at once but their files are deleted at the next ``flush()``
(before the next checkpoint): a run killed after a checkpoint still finds on disk every
episode the checkpoint's replay held, and ``load`` re-applies the FIFO rule with the
checkpoint's running episodes. The checkpoint's episodes already obey it, so that removes
nothing there; when the disk holds more (files of episodes evicted since the last ``flush()``,
a smaller ``capacity``) it drops the oldest episodes that are not running, which for one
worker gives the same set as applying the rule step by step (both keep the longest suffix
that fits); with N workers an episode pinned while it ran can make the two differ.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
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
    """One file: ``length`` rows of episode ``episode``, the first at global step ``first``
    and the last at ``last`` (contiguous only when ``length == last − first + 1``)."""

    path: Path
    episode: int
    index: int
    first: int
    last: int
    length: int

    @classmethod
    def parse(cls, path: Path) -> _Chunk | None:
        match = _NAME.fullmatch(path.name)
        if not match:
            return None
        episode, index, first, last, length = map(int, match.groups())
        # Rows have increasing global steps: one row sits at first == last, more span at least length steps.
        valid = (length == 1 and first == last) or 1 < length <= last - first + 1
        return cls(path, episode, index, first, last, length) if valid else None

    @property
    def contiguous(self) -> bool:
        """Whether the rows are the global steps ``first..last`` (no other worker's step between)."""
        return self.last - self.first + 1 == self.length


@dataclass
class _Episode:
    """One episode in memory: ``data[key]`` is a buffer ``[capacity, ...]`` whose first
    ``length`` rows are valid (a running episode grows it; a closed one is trimmed)."""

    id: int
    data: dict[str, np.ndarray]
    length: int
    last_step: int = -1  # global step of the last row
    unsaved_step: int = -1  # global step of row ``saved`` (the first not on disk), when there is one
    saved: int = 0  # rows already on disk
    files: list[Path] = field(default_factory=list)


class Replay:
    """FIFO dataset of episodes with uniform sequence sampling (Hafner et al. 2021, sec. 2.1).

    ``capacity`` is in agent steps; the oldest whole episodes are dropped, never a running
    one. ``chunk`` is the number of steps of a running episode per file. ``seed`` seeds the
    sampling RNG (numpy PCG64), so same seed and same adds give the same batches. Each
    ``worker`` (environment index) passed to ``add`` has its own running episode.
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
        self._running: list[_Episode | None] = []  # per worker
        self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._num_steps = 0  # steps held now
        self._step = 0  # global step: steps ever added
        self._next_id = 0
        self._evicted_files: list[Path] = []  # deleted at the next flush()

    # ------------------------------------------------------------------ adding
    def add(self, step: dict[str, Any], worker: int = 0) -> None:
        """Append one agent step of environment ``worker`` (0..N−1) to that worker's running
        episode. ``is_first`` starts an episode (closing the worker's running one that never
        saw ``is_last``); ``is_last`` closes the episode and writes its tail."""
        if worker < 0:
            raise ValueError(f"replay worker must be a non-negative environment index, got {worker}")
        if not self._spec:
            self._spec = _spec_of(step)
        if set(step) != set(self._spec):
            raise ValueError(f"replay step keys {sorted(step)} differ from the stored keys {sorted(self._spec)}")
        running = self._running[worker] if worker < len(self._running) else None
        if bool(step["is_first"]):
            if running is not None:
                self._close(worker)
            self._running.extend([None] * (worker + 1 - len(self._running)))
            running = self._running[worker] = _Episode(self._next_id, self._empty(64), 0)
            self._next_id += 1
            self._episodes.append(running)
        elif running is None:
            on = f" on worker {worker}" if worker else ""
            raise ValueError(f"replay step has is_first=False but no episode is running{on}; "
                             "the first step of every episode must have is_first=True")
        episode = running
        if episode.length == len(episode.data["is_first"]):
            self._grow(episode)
        for key, (shape, _) in self._spec.items():
            value = step[key]
            if np.shape(value) != shape:  # assignment would broadcast a scalar silently
                raise ValueError(f"replay step {key!r} has shape {np.shape(value)}, expected {shape}")
            episode.data[key][episode.length] = value
        if episode.saved == episode.length:
            episode.unsaved_step = self._step
        episode.last_step = self._step
        episode.length += 1
        self._num_steps += 1
        self._step += 1
        if bool(step["is_last"]):
            self._close(worker)
        elif episode.length - episode.saved >= self.chunk:
            self._write(episode)
        self._evict()

    def flush(self) -> None:
        """Write every running episode's unsaved tail and delete evicted episodes' files.
        Call it before every checkpoint."""
        for episode in self._running:
            if episode is not None and episode.length > episode.saved:
                self._write(episode)
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

    def _close(self, worker: int) -> None:
        episode, self._running[worker] = self._running[worker], None
        if episode.length > episode.saved:
            self._write(episode)
        if len(episode.data["is_first"]) > episode.length:  # keep exactly one copy, no spare rows
            episode.data = {key: value[: episode.length].copy() for key, value in episode.data.items()}

    def _write(self, episode: _Episode) -> None:
        lo, hi = episode.saved, episode.length
        name = _chunk_name(episode.id, len(episode.files), episode.unsaved_step, episode.last_step, hi - lo)
        _write_npz(self.directory / name, {key: value[lo:hi] for key, value in episode.data.items()})
        episode.files.append(self.directory / name)
        episode.saved = hi

    def _running_ids(self) -> set[int]:
        return {episode.id for episode in self._running if episode is not None}

    def _evict(self) -> None:
        while self._num_steps > self.capacity and len(self._episodes) > 1:
            running = self._running_ids()
            oldest = next((i for i, episode in enumerate(self._episodes) if episode.id not in running), None)
            if oldest is None:  # every episode held is running
                return
            episode = self._episodes.pop(oldest)
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
        agent steps (rows − 1, as the official ``eplen``), and the running ones (every worker's)
        too if ``ongoing``."""
        running = set() if ongoing else self._running_ids()
        return [i for i, episode in enumerate(self._episodes)
                if episode.length - 1 >= minlen and episode.id not in running]

    def can_sample(self, length: int, ongoing: bool = True, minlen: int = 0) -> bool:
        """Whether ``sample`` can give sequences of ``length``: a sampleable episode, and ``length``
        steps held (a short episode continues into the next)."""
        return self._num_steps >= length and bool(self.sampleable(ongoing, minlen))

    # ----------------------------------------------------------- bookkeeping
    @property
    def num_steps(self) -> int:
        """Steps held now (at most ``capacity`` plus the running episodes' overshoot)."""
        return self._num_steps

    @property
    def num_episodes(self) -> int:
        """Episodes held now, the running ones included."""
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
        """JSON-able: counters (``step``, ``next_id``, ``num_steps``, ``num_episodes``), the
        sampling RNG (``rng``) and the running episodes (``running``).

        ``running`` is, per worker, ``{"id", "length"}`` of its running episode or ``None``: a
        list indexed by worker once a worker above 0 has added a step, else worker 0's entry
        alone (the one-environment format, so one-environment checkpoints are unchanged).
        ``running_ids`` reads both."""
        entries = self._running_entries()
        return {"step": self._step, "next_id": self._next_id, "num_steps": self._num_steps,
                "num_episodes": len(self._episodes), "running": entries if len(entries) > 1 else entries[0],
                "rng": self._rng.bit_generator.state}

    def _running_entries(self) -> list[dict[str, int] | None]:
        """``{"id", "length"}`` or ``None`` per worker, at least one entry."""
        entries = [None if e is None else {"id": e.id, "length": e.length} for e in self._running]
        return entries or [None]

    @staticmethod
    def running_ids(state: dict[str, Any]) -> list[int | None]:
        """The running episode's id per worker (``None``: no episode running) in a ``state_dict()``,
        either format; ``Replay.load(..., running=...)`` takes it."""
        return [None if entry is None else entry["id"] for entry in _per_worker(state["running"])]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters and the sampling RNG (either ``running`` format). Warns when the
        episodes found on disk, or the running ones ``load`` reopened, do not match the
        checkpoint (a corrupt file, no ``flush()`` before it, ``load`` not given ``running``
        for several workers): sampling then differs."""
        found = {"step": self._step, "num_steps": self._num_steps, "num_episodes": len(self._episodes),
                 "running": _trimmed(self._running_entries())}
        expected = {key: state[key] for key in found} | {"running": _trimmed(_per_worker(state["running"]))}
        if found != expected:
            warnings.warn(f"replay in {self.directory} does not match the checkpoint: found {found}, "
                          f"expected {expected}; sampling will not repeat exactly", stacklevel=2)
        self._step, self._next_id = state["step"], state["next_id"]
        self._rng.bit_generator.state = state["rng"]

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, directory: str | Path, capacity: int, chunk: int = 1024, seed: int = 0,
             upto_step: int | None = None, strict: bool = False,
             running: Sequence[int | None] | None = None) -> Replay:
        """Rebuild the replay from ``directory``. Steps at global index ``>= upto_step`` (written
        after the checkpoint) are deleted; the episodes running at ``upto_step`` are reopened so
        new steps append to them. ``*.tmp`` leftovers are deleted; corrupt files are reported
        with ``warnings.warn``, renamed ``*.corrupt`` and skipped (with the rest of their episode).
        ``upto_step=0`` deletes every episode: a run killed before its first checkpoint starts over.

        ``running``: the checkpoint's running episode id per worker (``running_ids(state)``);
        each is reopened for its worker if held and open, and FIFO eviction here never drops
        one. Without it, the newest episode is worker 0's running one if it is open and its
        last step is ``upto_step − 1`` (any open one when ``upto_step`` is None): the
        one-environment rule.

        ``strict``: a chunk that exists but cannot be read, or an interleaved chunk straddling
        ``upto_step``, raises ``CheckpointError`` naming it, before any file is deleted or cut
        (the resume of ``reverie train``); chunks missing from an episode (a corrupt one the user
        renamed) are still skipped with a warning."""
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
            episode = replay._read_episode(chunks, upto_step, cuts, stale, strict)
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
            replay._step = max(episode.last_step for episode in replay._episodes) + 1
            replay._next_id = replay._episodes[-1].id + 1
        replay._running = replay._reopen(running, upto_step)
        if upto_step is not None:
            replay._step = upto_step
        replay._evict()
        replay.flush()  # deletes the files of episodes evicted at load (they were evicted at upto_step too)
        return replay

    def _reopen(self, running: Sequence[int | None] | None, upto_step: int | None) -> list[_Episode | None]:
        """The running episode per worker after ``load``: the ids in ``running`` that are held
        and open, or without it the one-environment rule (see ``load``)."""
        is_open = lambda episode: not episode.data["is_last"][-1]  # noqa: E731
        if running is None:
            last = self._episodes[-1] if self._episodes else None
            reaches = last is not None and (upto_step is None or last.last_step + 1 == upto_step)
            return [last if reaches and is_open(last) else None]
        held = {episode.id: episode for episode in self._episodes if is_open(episode)}
        return [None if episode_id is None else held.get(episode_id) for episode_id in running]

    def _read_episode(self, chunks: list[_Chunk], upto_step: int | None, cuts: list[tuple[Path, dict, Path]],
                      stale: list[Path], strict: bool) -> _Episode | None:
        """Concatenate an episode's chunks; a corrupt or missing chunk ends the episode there
        (the chunks after it would leave a gap). A chunk straddling ``upto_step`` is cut in
        memory and its cut copy appended to ``cuts`` (new path, arrays, old path) for ``load``,
        or, when its rows interleave with other workers', appended to ``stale``."""
        parts, files, last = [], [], -1
        for chunk_file in chunks:
            if chunk_file.index != len(files) or chunk_file.first <= last:
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
            path, last = chunk_file.path, chunk_file.last
            if upto_step is not None and chunk_file.last >= upto_step:  # straddles the checkpoint
                if not chunk_file.contiguous:
                    self._drop_straddling(chunk_file, upto_step, strict)
                    stale.append(chunk_file.path)
                    break  # the chunks after it start after upto_step: already stale
                part = {key: value[: upto_step - chunk_file.first] for key, value in part.items()}
                path = self.directory / _chunk_name(chunk_file.episode, chunk_file.index, chunk_file.first,
                                                    upto_step - 1, upto_step - chunk_file.first)
                cuts.append((path, part, chunk_file.path))
                last = upto_step - 1
            self._spec = self._spec or {key: (value.shape[1:], value.dtype) for key, value in part.items()}
            parts.append(part)
            files.append(path)
        if not parts:
            return None
        data = {key: np.concatenate([p[key] for p in parts]) for key in self._spec}
        length = len(data["is_first"])
        return _Episode(chunks[0].episode, data, length, last_step=last, saved=length, files=files)

    def _drop_straddling(self, chunk_file: _Chunk, upto_step: int, strict: bool) -> None:
        """An interleaved chunk with rows on both sides of ``upto_step`` (a checkpoint taken
        without ``flush()``): the global step of a row inside it is unknown, so which rows
        precede ``upto_step`` cannot be told and none is kept."""
        problem = (f"its rows interleave with other workers' steps and straddle the checkpoint at step "
                   f"{upto_step} (no flush() before it), so the rows before that step cannot be told apart")
        if strict:
            raise CheckpointError(f"replay chunk {chunk_file.path}: {problem}. Resume without strict to drop it "
                                  "and the rest of its episode (the run then differs from an uninterrupted one)")
        warnings.warn(f"replay: dropping {chunk_file.path}: {problem}; its episode ends at the chunk before",
                      stacklevel=4)


def _per_worker(running: Any) -> list[dict[str, int] | None]:
    """A ``state_dict()``'s ``running`` as a list per worker: the one-environment format
    (``{"id", "length"}`` or ``None``) is worker 0's entry."""
    return list(running) if isinstance(running, list) else [running]


def _trimmed(entries: list[dict[str, int] | None]) -> list[dict[str, int] | None]:
    """Without trailing ``None``s: a worker with no running episode and no worker compare equal."""
    entries = list(entries)
    while entries and entries[-1] is None:
        entries.pop()
    return entries


def _chunk_name(episode: int, index: int, first: int, last: int, length: int) -> str:
    """File name of ``length`` rows of an episode, the first at global step ``first``, the last at ``last``."""
    return f"ep{episode:06d}-{index:04d}-{first:012d}-{last:012d}-{length}.npz"


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


