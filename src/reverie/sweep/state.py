"""State on disk: each run's ``status.json`` (written by ``reverie train``), the study's
``sweep_state.json`` (written only by the sweep process) and its lock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reverie.report.metrics import status_path
from reverie.utils import Flock, atomic_write_text

if TYPE_CHECKING:
    from reverie.sweep.plan import Plan, RunSpec

STATE_FILE = "sweep_state.json"
LOCK_FILE = ".sweep.lock"



def read_status(logdir: Path) -> dict[str, Any]:
    """A run's ``status.json`` (written atomically by ``reverie train``), ``{}`` if absent."""
    try:
        return json.loads(status_path(logdir).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_finished(logdir: Path, steps: int | None = None) -> bool:
    """The run in ``logdir`` finished (``status_finished``)."""
    return status_finished(read_status(logdir), steps)


def status_finished(status: dict[str, Any], steps: int | None = None) -> bool:
    """A run's ``status.json`` says finished, at ``steps`` agent steps or more where given: a run
    that finished at a smaller target (a pilot moved into a study) is not finished for the study."""
    return status.get("state") == "finished" and (steps is None or status.get("step", 0) >= steps)


def recorded_run(recorded: str | Path | None, path: str, steps: int, presets: int) -> dict[str, Any] | None:
    """The ``run.json`` that ``benchmarks.record_study`` wrote under ``recorded`` for the run at
    ``path`` (``<preset dir>/<task>/<seed>``) when it says finished at ``steps`` or more, else None.
    Its folder is ``recorded/<path>``, or ``recorded/<task>/<seed>`` for a study of one preset
    (recorded from ``ROOT/<preset dir>``); the task and seed it names must be the run's."""
    if recorded is None:
        return None
    _, task, seed = path.split("/")
    for folder in [Path(recorded) / path] + ([Path(recorded) / task / seed] if presets == 1 else []):
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (info.get("task"), str(info.get("seed"))) == (task, seed) and info.get("finished") \
                and info.get("steps_reached", 0) >= steps:
            return info
    return None


def finished_elsewhere(plan: Plan, run: RunSpec, status: dict[str, Any]) -> dict[str, Any] | None:
    """``recorded_run`` of ``run`` in the plan's ``--recorded`` folder, where the run's own
    ``status`` (its ``status.json`` under ROOT) is empty: a run directory that exists always wins."""
    return None if status else recorded_run(plan.recorded, run.path, run.total_steps, len(plan.presets))


def read_state(root: Path) -> dict[str, Any]:
    """``sweep_state.json``: ``{"sweep": {...}, "runs": {path: {"state", "attempts", ...}}}``."""
    try:
        return json.loads((Path(root) / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {"sweep": {}, "runs": {}}


def write_state(root: Path, state: dict[str, Any]) -> None:
    atomic_write_text(Path(root) / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")


class StudyLock(Flock):
    """An exclusive ``flock`` on ``ROOT/.sweep.lock``; the kernel drops it when the sweep dies,
    however it dies, so a killed sweep never blocks its own re-run."""

    def __init__(self, root: Path):
        super().__init__(Path(root) / LOCK_FILE)

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.open("a").close()  # created if absent; an existing one is left as it is
        return super().acquire()


def sweep_is_live(root: Path) -> bool:
    """True while some sweep holds the study's lock."""
    return StudyLock(root).held_elsewhere()


def run_is_training(logdir: Path) -> bool:
    """True while a process trains the run in ``logdir`` (it holds the lock of ``reverie train``'s
    ``hold_run``), whether a sweep started it or someone by hand."""
    return Flock(logdir).held_elsewhere()
