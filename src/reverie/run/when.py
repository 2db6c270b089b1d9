"""When the training loop does what: small predicates of the agent step.

After danijar/embodied's ``core/when.py``, with one difference: ``Every``, ``Before`` and
``Ratio`` are pure functions of the step (no counter of their own), so a resumed run asks
them the same questions at the same steps as the run that never stopped, and nothing of
theirs needs a checkpoint. ``Once`` has one bit of state, which the loop saves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Every:
    """True on the steps ``n, 2n, 3n, ...``; never when ``n`` is 0 (the feature is off)."""

    n: int

    def __call__(self, step: int) -> bool:
        return self.n > 0 and step % self.n == 0


@dataclass(frozen=True)
class Before:
    """True while ``step < limit``: the prefill phase acts at random before ``run.prefill``."""

    limit: int

    def __call__(self, step: int) -> bool:
        return step < self.limit


@dataclass(frozen=True)
class Ratio:
    """The number of updates due after agent step ``step``: ``updates`` on every ``every``-th
    step, else 0. That is ``updates / every`` gradient updates per agent step, the paper's
    train ratio (Table D1: one update every 4 agent steps)."""

    every: int
    updates: int

    def __call__(self, step: int) -> int:
        return self.updates if Every(self.every)(step) else 0


@dataclass
class Once:
    """True on its first call, False ever after. ``done`` goes into the checkpoint, so a
    resumed run does not repeat what it guards (the pretraining updates)."""

    done: bool = False

    def __call__(self) -> bool:
        first, self.done = not self.done, True
        return first
