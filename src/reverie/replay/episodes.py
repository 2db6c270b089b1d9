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

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reverie.replay import disk
from reverie.replay.sampler import Sampler, sampleable
from reverie.replay.storage import EpisodeStore

__all__ = ["Replay"]


class Replay:
    """FIFO dataset of episodes with uniform sequence sampling (Hafner et al. 2021, sec. 2.1).

    ``capacity`` is in agent steps; the oldest whole episodes are dropped, never a running
    one. ``chunk`` is the number of steps of a running episode per file. ``seed`` seeds the
    sampling RNG (numpy PCG64), so same seed and same adds give the same batches. Each
    ``worker`` (environment index) passed to ``add`` has its own running episode.

    A composition: the episodes in memory and their files (``storage.EpisodeStore``, writing
    ``disk`` chunks), the draws (``sampler.Sampler``), and the resume that joins them.
    """

    def __init__(self, directory: str | Path, capacity: int, chunk: int = 1024, seed: int = 0):
        self._store = EpisodeStore(directory, capacity, chunk)
        self._sampler = Sampler(seed)
        if any(self.directory.glob("ep*.npz")):
            raise FileExistsError(
                f"{self.directory} already holds episodes; use Replay.load(...) to resume from them "
                "(upto_step=0 discards them)"
            )

    @property
    def directory(self) -> Path:
        return self._store.directory

    @property
    def capacity(self) -> int:
        return self._store.capacity

    @property
    def chunk(self) -> int:
        return self._store.chunk

    # ------------------------------------------------------------------ adding
    def add(self, step: dict[str, Any], worker: int = 0) -> None:
        """Append one agent step of environment ``worker`` (0..N−1) to that worker's running
        episode. ``is_first`` starts an episode (closing the worker's running one that never
        saw ``is_last``); ``is_last`` closes the episode and writes its tail."""
        self._store.add(step, worker)

    def flush(self) -> None:
        """Write every running episode's unsaved tail and delete evicted episodes' files.
        Call it before every checkpoint."""
        self._store.flush()

    # ---------------------------------------------------------------- sampling
    def sample(self, batch: int, length: int, prioritize_ends: bool = False, *, clip_start: bool = True,
               ongoing: bool = True, minlen: int = 0, cross_episodes: bool = False) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` steps: ``{key: [B, L, ...]}``, dtypes as stored.

        Each sequence picks an episode uniformly among the sampleable ones (``sampleable``) and
        a start in it (``start``). An episode shorter than ``L`` is continued with the next
        stored episodes (wrapping to the oldest), whose first step has ``is_first=True``; with
        ``cross_episodes`` so is any window that runs past its episode's end.

        The first step of every sequence is marked ``is_first`` (official ``replay.py``,
        ``_sample_sequence``): training starts each sequence from the RSSM's zero state, the
        state acting starts every episode from, never from an unrelated sequence's state.
        """
        if self.num_steps < length:
            raise ValueError(f"replay holds {self.num_steps} steps, fewer than the sequence length "
                             f"L={length}; collect more steps (run.prefill) before sampling")
        choices = self.sampleable(ongoing, minlen)
        if not choices:
            raise ValueError(f"replay holds no episode to sample with ongoing={ongoing} and minlen={minlen} "
                             "(a finished one, of at least minlen agent steps); collect more episodes first")
        return self._sampler.sample(self._store.episodes, choices, self._store.spec, batch, length,
                                    prioritize_ends, clip_start, cross_episodes)

    def start(self, total: int, length: int, prioritize_ends: bool, clip_start: bool,
              cross_episodes: bool = False) -> int:
        """A start index in an episode of ``total`` rows (the reset step included), drawn as the
        config says (``ReplayConfig.prioritize_ends``, ``clip_start``): with ``prioritize_ends``
        uniform in ``[0, total]`` and clipped to ``total − L`` (official, ``upper = total − L + 1
        + L``); else with ``clip_start`` uniform in ``[0, total)`` and clipped (paper sec. 2.1);
        else uniform over the ``total − L + 1`` starts that fit (official, ``upper = total − L +
        1``). An episode shorter than ``L`` starts at 0 (and continues into the next). With
        ``cross_episodes`` uniform in ``[0, total)``, unclipped: the window may run into the next
        episode, so the episode's end can fall at any position of it."""
        return self._sampler.start(total, length, prioritize_ends, clip_start, cross_episodes)

    def sampleable(self, ongoing: bool = True, minlen: int = 0) -> list[int]:
        """Indices of the episodes a sequence may start in: finished ones with at least ``minlen``
        agent steps (rows − 1, as the official ``eplen``), and the running ones (every worker's)
        too if ``ongoing``."""
        return sampleable(self._store.episodes, set() if ongoing else self._store.running_ids(), minlen)

    def can_sample(self, length: int, ongoing: bool = True, minlen: int = 0) -> bool:
        """Whether ``sample`` can give sequences of ``length``: a sampleable episode, and ``length``
        steps held (a short episode continues into the next)."""
        return self.num_steps >= length and bool(self.sampleable(ongoing, minlen))

    # ----------------------------------------------------------- bookkeeping
    @property
    def num_steps(self) -> int:
        """Steps held now (at most ``capacity`` plus the running episodes' overshoot)."""
        return self._store.num_steps

    @property
    def num_episodes(self) -> int:
        """Episodes held now, the running ones included."""
        return len(self._store.episodes)

    @property
    def step(self) -> int:
        """Global step: the number of ``add`` calls over the whole run, evicted ones included."""
        return self._store.step

    def __len__(self) -> int:
        return self.num_steps

    def bytes_per_step(self) -> int:
        """Bytes of RAM one stored step takes (all keys, one copy), measured from the arrays."""
        return sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in self._store.spec.values())

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: counters (``step``, ``next_id``, ``num_steps``, ``num_episodes``), the
        sampling RNG (``rng``) and the running episodes (``running``).

        ``running`` is, per worker, ``{"id", "length"}`` of its running episode or ``None``: a
        list indexed by worker once a worker above 0 has added a step, else worker 0's entry
        alone (the one-environment format, so one-environment checkpoints are unchanged).
        ``running_ids`` reads both."""
        entries = self._store.running_entries()
        return {"step": self.step, "next_id": self._store.next_id, "num_steps": self.num_steps,
                "num_episodes": self.num_episodes, "running": entries if len(entries) > 1 else entries[0],
                "rng": self._sampler.rng.bit_generator.state}

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
        found = {"step": self.step, "num_steps": self.num_steps, "num_episodes": self.num_episodes,
                 "running": _trimmed(self._store.running_entries())}
        expected = {key: state[key] for key in found} | {"running": _trimmed(_per_worker(state["running"]))}
        if found != expected:
            warnings.warn(f"replay in {self.directory} does not match the checkpoint: found {found}, "
                          f"expected {expected}; sampling will not repeat exactly", stacklevel=2)
        self._store.step, self._store.next_id = state["step"], state["next_id"]
        self._sampler.rng.bit_generator.state = state["rng"]

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
        replay._store = EpisodeStore(directory, capacity, chunk)
        replay._sampler = Sampler(seed)
        recovered, spec = disk.read_directory(replay.directory, upto_step, strict)
        replay._store.restore(recovered, spec, running, upto_step)
        return replay


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
