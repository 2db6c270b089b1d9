"""``reverie sweep --status ROOT``: one row per run and the study's ETA.

Reads only files: the plan (``sweep.yaml``), the sweep's ``sweep_state.json``, each run's
``status.json`` and the locks (the sweep's, and each run directory's while a process trains it,
so a run started by hand shows as running), so it works from any machine that sees ROOT (and
shares its locks), while the sweep runs or after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reverie.report.metrics import format_duration, status_path
from reverie.sweep.plan import Plan
from reverie.sweep.state import (
    finished_elsewhere,
    read_state,
    read_status,
    run_is_training,
    status_finished,
    sweep_is_live,
)

COLUMNS = ("run", "state", "frames", "eval return", "time/1M frames", "attempts")
DONE = ("finished", "recorded")  # recorded: finished elsewhere, its copy in the plan's --recorded folder


@dataclass
class RunRow:
    """A run as ``--status`` shows it. ``seconds_per_frame`` is None before the first frames."""

    path: str
    state: str  # finished | recorded (finished, in --recorded) | running | queued | failed | stopped | pending
    frames: int
    total_frames: int
    eval_return: float | None
    seconds_per_frame: float | None
    attempts: int


def run_rows(root: Path, live: bool) -> tuple[list[RunRow], dict]:
    """The rows of a study and the ``sweep`` record of its state file (slots, resources);
    ``live``: whether a sweep holds the study's lock now."""
    plan, state = Plan.read(root), read_state(root)
    rows = []
    for run in plan.runs:
        logdir, record = plan.logdir(run), state.get("runs", {}).get(run.path, {})
        status = read_status(logdir)
        recorded = finished_elsewhere(plan, run, status)
        if recorded:  # finished elsewhere: its recorded copy stands for it (--recorded)
            frames, wall = recorded["steps_reached"] * run.action_repeat, recorded.get("wall_seconds")
            rows.append(RunRow(run.path, "recorded", frames, run.total_frames, recorded.get("final_score"),
                               wall / frames if wall and frames else None, int(record.get("attempts", 0))))
            continue
        frames, wall = int(status.get("frames") or 0), status.get("wall_seconds")
        shown = _state(status, run.total_steps, _mtime(status_path(logdir)), record, live, run_is_training(logdir))
        rows.append(RunRow(run.path, shown, frames,
                           run.total_frames, status.get("last_eval_return"),
                           wall / frames if wall and frames else None, int(record.get("attempts", 0))))
    return rows, state.get("sweep", {})


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _state(status: dict, steps: int, status_mtime: float | None, record: dict, live: bool, training: bool) -> str:
    """``status.json`` decides finished (at the plan's ``steps``); a process that holds the run
    directory's lock (``training``), running, whoever started it; the sweep's record decides
    failed and, while a sweep is live, queued. A queued run (submitted to Ray, or waiting in the
    sweep) is running once ``reverie train`` has written its status.json since the submission."""
    if status_finished(status, steps):
        return "finished"
    if training:
        return "running"
    if record.get("state") == "failed":
        return "failed"
    if live and record.get("state") == "queued":
        submitted = record.get("submitted")
        started = submitted is not None and status_mtime is not None and status_mtime >= submitted
        return "running" if started else "queued"
    return "stopped" if status else "pending"


def study_eta(rows: list[RunRow], slots: int) -> float | None:
    """Seconds until every run is finished with ``slots`` runs at a time: the frames left of
    each run at its own speed (runs not started yet: the mean speed), spread over the slots,
    but never less than the longest single run still to go. None before any run has a speed."""
    speeds = [r.seconds_per_frame for r in rows if r.seconds_per_frame]
    if not speeds:
        return None if any(r.state not in DONE for r in rows) else 0.0
    mean = sum(speeds) / len(speeds)
    left = [max(r.total_frames - r.frames, 0) * (r.seconds_per_frame or mean) for r in rows if r.state not in DONE]
    return max(sum(left) / max(slots, 1), max(left, default=0.0))


def format_status(root: Path) -> str:
    """The ``--status`` table, then totals and the ETA."""
    root, live = Path(root), sweep_is_live(root)
    rows, sweep = run_rows(root, live)
    lines = [list(COLUMNS)]
    for r in rows:
        lines.append([r.path, r.state, f"{r.frames:,}/{r.total_frames:,}",
                      "-" if r.eval_return is None else f"{r.eval_return:.1f}",
                      "-" if r.seconds_per_frame is None else format_duration(r.seconds_per_frame * 1e6),
                      str(r.attempts)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    slots = int(sweep.get("slots") or 1)
    eta = study_eta(rows, slots)
    text += ["", f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
             f"sweep: {'running' if live else 'not running'}"
             + ("" if live or sum(counts.get(s, 0) for s in DONE) == len(rows)
                else " (re-run the sweep command to continue)"),
             f"ETA of the study: {'unknown (no run has frames yet)' if eta is None else format_duration(eta)}"
             f" at {slots} run{'s' if slots != 1 else ''} at a time"]
    return "\n".join(text)
