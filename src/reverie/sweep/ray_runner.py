"""Scheduling on Ray: one task per run, each starting ``reverie train`` as a subprocess."""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reverie.errors import ConfigError
from reverie.sweep.plan import Plan, RunSpec
from reverie.sweep.state import (
    finished_elsewhere,
    is_finished,
    read_state,
    read_status,
    status_finished,
    write_state,
)

RAY_LINK = ".ray"  # hidden, so that `reverie scores ROOT` does not search Ray's session files
ERROR_TAIL_LINES = 30  # lines of train.log kept in sweep_state.json for a failed attempt



def run_threads(cpus: float) -> int:
    """CPU threads of a run given ``--cpus-per-run``: Ray's own rule for ``OMP_NUM_THREADS``
    (the floor, at least 1)."""
    return max(1, math.floor(cpus))


def train_argv(plan: Plan, run: RunSpec, threads: int | None = None) -> list[str]:
    """The ``reverie train`` arguments of a run (after ``python -m reverie``); ``threads``
    (from ``--cpus-per-run``) becomes the run's ``threads``, over any preset's value."""
    argv = ["train", "--task", run.task, "--preset", run.preset, "--seed", str(run.seed),
            "--logdir", str(plan.logdir(run))]
    if plan.steps is not None:
        argv += ["--steps", str(plan.steps)]
    for item in plan.overrides:
        argv += ["--set", item]
    if threads is not None:
        argv += ["--set", f"threads={threads}"]
    return argv


def run_training(argv: list[str], logdir: str, threads: int | None = None) -> dict[str, Any]:
    """Body of the Ray task: run ``reverie train`` to completion, output appended to train.log.
    ``threads`` becomes the run's ``OMP_NUM_THREADS`` (Ray sets it only where it is unset).

    Returns ``{"returncode", "finished", "seconds", "tail"}``; never raises for a failed run,
    so that the sweep records it instead of Ray retrying it blindly."""
    import subprocess

    logdir_path = Path(logdir)
    logdir_path.mkdir(parents=True, exist_ok=True)
    log = logdir_path / "train.log"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads is not None else {})}
    start = time.time()
    with open(log, "ab") as out:
        out.write(f"\n# reverie sweep: attempt started {time.ctime()} on {os.uname().nodename}, "
                  f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS')}\n".encode())
        out.flush()
        # sys.executable is the worker's Python: on a cluster, the node's own install. The run
        # stays in the worker's process group: Ray kills it with the worker (a cancelled task,
        # a killed sweep), so it never outlives the sweep to race its own resume.
        code = subprocess.call([sys.executable, "-m", "reverie", *argv], env=env,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    lines = log.read_text(errors="replace").splitlines()
    return {"returncode": code, "finished": is_finished(logdir_path), "seconds": time.time() - start,
            "tail": "\n".join(lines[-ERROR_TAIL_LINES:])}


def ray_temp_dir(root: Path) -> Path:
    """A short temp dir for the local Ray instance, named after the study root.

    Ray puts Unix sockets under it and socket paths are limited to ~107 bytes, so it cannot
    live under an arbitrarily deep ``--logdir``; ``ROOT/.ray`` links to it instead."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"reverie-ray-{digest}"


def start_ray(root: Path, address: str | None) -> None:
    """Connect to ``address``, or start a private local instance with sensible limits (after
    ``reverie.runtime.prepare_ray``)."""
    import ray

    if address:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
        return
    temp = ray_temp_dir(root)
    temp.mkdir(parents=True, exist_ok=True)
    link = root / RAY_LINK
    if not link.is_symlink():
        link.symlink_to(temp, target_is_directory=True)
    # The object store only carries small result dicts; the default (30% of RAM in /dev/shm)
    # would take memory away from the runs. CPUs and GPUs are detected.
    ray.init(include_dashboard=False, _temp_dir=str(temp), object_store_memory=256 * 2**20,
             configure_logging=False, log_to_driver=False)


def default_gpus_per_run(cluster: dict[str, float]) -> float:
    """One GPU per run when the cluster has any (the paper's setting), else none."""
    return 1.0 if cluster.get("GPU", 0) > 0 else 0.0


def slots(cluster: dict[str, float], cpus: float, gpus: float, max_concurrent: int | None, runs: int) -> int:
    """How many runs fit at once: by CPUs, by GPUs, by --max-concurrent and by the runs."""
    fits = [runs, max_concurrent or runs]
    if cpus > 0:
        fits.append(int(cluster.get("CPU", 0) // cpus))
    if gpus > 0:
        fits.append(int(cluster.get("GPU", 0) // gpus))
    return max(1, min(fits))


@dataclass
class Outcome:
    """What one sweep invocation did."""

    finished: list[str] = field(default_factory=list)  # run paths finished by now (incl. earlier)
    skipped: list[str] = field(default_factory=list)  # already finished before this invocation
    recorded: list[str] = field(default_factory=list)  # of the skipped, those finished in --recorded only
    failed: list[str] = field(default_factory=list)  # out of attempts in this invocation


def schedule(plan: Plan, cpus: float, gpus: float | None, max_concurrent: int | None,
             retries: int, log=print) -> Outcome:
    """Run every unfinished run of ``plan`` on the connected Ray cluster; returns when all are
    finished or out of attempts (``1 + retries`` per run per invocation)."""
    import ray

    gpus = _check_fits(ray.cluster_resources(), cpus, gpus)
    # max_retries: Ray re-executes the task if its worker process dies (node lost, Ray's OOM
    # killer); a failed `reverie train` is a normal return and counts against --retries.
    task = ray.remote(run_training).options(num_cpus=cpus, num_gpus=gpus, max_retries=1)
    state, outcome = read_state(plan.root), Outcome()
    runs = state.setdefault("runs", {})
    queue = _queue_unfinished(plan, runs, outcome)

    def sweep_record() -> dict[str, Any]:  # slots follow the cluster's size (autoscaling, lost nodes)
        return {"pid": os.getpid(), "host": os.uname().nodename, "cpus_per_run": cpus, "gpus_per_run": gpus,
                "slots": slots(ray.cluster_resources(), cpus, gpus, max_concurrent, len(plan.runs))}

    state["sweep"] = sweep_record()
    write_state(plan.root, state)
    log(f"sweep: {len(plan.runs)} runs, {len(outcome.skipped)} finished already"
        + (f" ({len(outcome.recorded)} of them recorded in {plan.recorded}, not under ROOT)" if outcome.recorded else "")
        + f", {len(queue)} to run, "
        f"{state['sweep']['slots']} at a time ({cpus:g} CPU, {gpus:g} GPU each)")
    # Without --max-concurrent every run is submitted at once and Ray queues them by resources:
    # that pending demand is what makes an autoscaling cluster grow.
    width = max_concurrent or len(queue)
    tries: dict[str, int] = {}  # attempts in this invocation
    inflight: dict[Any, RunSpec] = {}
    try:
        while queue or inflight:
            while queue and len(inflight) < width:  # backpressure: at most `width` tasks in Ray
                run = queue.popleft()
                tries[run.path] = tries.get(run.path, 0) + 1
                record = runs[run.path]
                record.update(state="queued", attempts=record["attempts"] + 1, submitted=time.time())
                threads = run_threads(cpus)
                inflight[task.remote(train_argv(plan, run, threads), str(plan.logdir(run)), threads)] = run
            write_state(plan.root, state)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                run = inflight.pop(ref)
                if _record_result(plan, run, runs[run.path], _result(ray, ref), tries[run.path], retries, log):
                    queue.appendleft(run)  # next: it has the most done (it resumes), and came first in the plan
            state["sweep"] = sweep_record()
            write_state(plan.root, state)
    finally:
        _stop(ray, inflight, runs)
        write_state(plan.root, state)
    outcome.finished = [r.path for r in plan.runs if runs[r.path]["state"] == "finished"]
    outcome.failed = [r.path for r in plan.runs if runs[r.path]["state"] == "failed"]
    return outcome


def _check_fits(cluster: dict[str, float], cpus: float, gpus: float | None) -> float:
    """The GPUs per run (the default where not given); refuses a run bigger than the cluster."""
    gpus = default_gpus_per_run(cluster) if gpus is None else gpus
    if gpus > cluster.get("GPU", 0) or cpus > cluster.get("CPU", 0):
        raise ConfigError(f"a run asks for {cpus:g} CPUs and {gpus:g} GPUs but the Ray cluster has "
                          f"{cluster.get('CPU', 0):g} and {cluster.get('GPU', 0):g}; lower --cpus-per-run/--gpus-per-run")
    return gpus


def _queue_unfinished(plan: Plan, runs: dict[str, dict], outcome: Outcome) -> deque[RunSpec]:
    """Mark each run finished or queued in ``runs`` (the state file's records); the queue. A run
    recorded as finished in ``plan.recorded`` (``--recorded``) is finished, unless a run directory
    under ROOT has steps of its own (that run goes on: a directory that exists always wins)."""
    queue: deque[RunSpec] = deque()
    for run in plan.runs:
        record = runs.setdefault(run.path, {"attempts": 0})
        record.pop("recorded", None)
        status = read_status(plan.logdir(run))
        if status_finished(status, run.total_steps):
            record["state"] = "finished"
            outcome.skipped.append(run.path)
        elif finished_elsewhere(plan, run, status):
            record.update(state="finished", recorded=plan.recorded)
            outcome.skipped.append(run.path)
            outcome.recorded.append(run.path)
        else:
            record["state"] = "queued"
            queue.append(run)
    return queue


def _record_result(plan: Plan, run: RunSpec, record: dict[str, Any], result: dict[str, Any], tries: int,
                   retries: int, log) -> bool:
    """Write a finished task's result into its record; True when the run goes back in the queue."""
    record.pop("submitted", None)
    if result["finished"]:
        record.update(state="finished", last_error=None)
        log(f"sweep: finished {run.path} ({result['seconds']:.0f} s)")
        return False
    record.update(state="failed", returncode=result["returncode"], last_error=result["tail"])
    again = tries <= retries
    log(f"sweep: FAILED {run.path} (exit {result['returncode']}, attempt {tries}"
        f"/{retries + 1}){'; retrying' if again else ''}; log: {plan.logdir(run) / 'train.log'}")
    if again:
        record["state"] = "queued"
    return again


def _stop(ray, inflight: dict[Any, RunSpec], runs: dict[str, dict]) -> None:
    """Ctrl-C or an error: cancel the runs in flight (they resume next time)."""
    for ref, run in inflight.items():
        ray.cancel(ref, force=True)
        runs[run.path]["state"] = "stopped"
        runs[run.path].pop("submitted", None)


def _result(ray, ref) -> dict[str, Any]:
    """The task's result; a task Ray itself gave up on (worker died twice) becomes a failure."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return {"returncode": None, "finished": False, "seconds": 0.0, "tail": f"Ray: {error}"[-4000:]}

