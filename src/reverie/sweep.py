"""``reverie sweep``: the paper's study (games × seeds × presets) on a Ray cluster, resumably.

One Ray task per run (task, seed, preset). Each task starts ``reverie train`` as a
subprocess on ``ROOT/<preset dir>/<task>/<seed>/``, so a run that crashes or runs out of
memory takes down neither the Ray worker nor its neighbours, and the run directory is an
ordinary one that ``train`` (resume), ``eval``, ``scores`` and ``plot`` understand.

Files of a study ``ROOT`` (see docs/SWEEP.md):

- ``sweep.yaml``: the plan, written before anything is scheduled;
- ``sweep_state.json``: attempts, state and last error tail of every run (written only by
  the sweep process, atomically);
- ``.sweep.lock``: held (``flock``) while a sweep runs, so two sweeps never train the same
  runs and ``--status`` can tell a live study from a stopped one;
- ``.ray``: link to the local Ray instance's temp dir; ``plots/``: figures at the end.

Resume is by construction: a run whose ``status.json`` says ``finished`` is skipped, any
other run is (re)started with the same ``reverie train`` command, which resumes from its
newest complete checkpoint.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reverie.config import load_config
from reverie.errors import ConfigError, ReverieError, TaskError
from reverie.games import ATARI55
from reverie.utils import atomic_write_text

PLAN_FILE = "sweep.yaml"
STATE_FILE = "sweep_state.json"
LOCK_FILE = ".sweep.lock"
RAY_LINK = ".ray"  # hidden, so that `reverie scores ROOT` does not search Ray's session files
PLOTS_DIR = "plots"
ERROR_TAIL_LINES = 30  # lines of train.log kept in sweep_state.json for a failed attempt


# ---------------------------------------------------------------------------------------------
# The plan.


@dataclass(frozen=True)
class RunSpec:
    """One run of the study. ``path`` is relative to the study root: ``<preset dir>/<task>/<seed>``."""

    task: str
    seed: int
    preset: str  # comma-composed presets of this variant, e.g. "atari,no_layer_norm"
    total_steps: int  # agent steps at the end of the run (run.steps, or --steps)
    action_repeat: int  # frames per agent step, to report frames

    @property
    def path(self) -> str:
        return f"{preset_dirname(self.preset)}/{self.task}/{self.seed}"

    @property
    def total_frames(self) -> int:
        return self.total_steps * self.action_repeat


@dataclass
class Plan:
    """What ``ROOT/sweep.yaml`` holds: the inputs of the study and the runs they expand to.

    Runs are ordered preset, then seed, then task, so that with fewer slots than runs one
    complete seed of every game finishes first (an early, complete Table 1)."""

    root: Path
    tasks: list[str]
    seeds: list[int]
    presets: list[str]
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE of every run
    steps: int | None = None  # --steps; None = each preset's run.steps
    runs: list[RunSpec] = field(default_factory=list)

    def logdir(self, run: RunSpec) -> Path:
        return self.root / run.path

    def to_yaml(self) -> str:
        data = {"version": 1, "tasks": self.tasks, "seeds": self.seeds, "presets": self.presets,
                "overrides": self.overrides, "steps": self.steps, "runs": [asdict(r) for r in self.runs]}
        return yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def read(cls, root: str | Path) -> Plan:
        path = Path(root) / PLAN_FILE
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ReverieError(f"{path}: cannot read the study's plan ({getattr(error, 'strerror', error)}); "
                               "is this the --logdir of a `reverie sweep`?") from error
        try:
            runs = [RunSpec(**run) for run in data.pop("runs")]
            data.pop("version", None)
            return cls(root=Path(root), runs=runs, **data)
        except (AttributeError, KeyError, TypeError) as error:
            raise ReverieError(f"{path}: not a plan written by `reverie sweep` ({error})") from error


def preset_dirname(preset: str) -> str:
    """Folder of a preset variant: ``atari,no_layer_norm`` → ``atari+no_layer_norm``."""
    return preset.replace(",", "+")


def parse_tasks(spec: str | None) -> list[str]:
    """``atari55``, a comma list (which may contain ``atari55``), or ``@file`` with one task
    per line (``#`` comments and blank lines ignored). Duplicates are dropped, order kept."""
    if not spec:
        raise ConfigError("--tasks is required: atari55, a comma list such as atari_pong,atari_breakout, "
                          "or @file with one task per line")
    if spec.startswith("@"):
        try:
            text = Path(spec[1:]).read_text()
        except OSError as error:
            raise ConfigError(f"--tasks {spec}: cannot read {spec[1:]} ({error.strerror})") from error
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        items = [item.strip() for item in spec.split(",")]
    tasks: list[str] = []
    for item in filter(None, items):
        tasks += [f"atari_{rom}" for rom in ATARI55] if item == "atari55" else [item]
    if not tasks:
        raise ConfigError(f"--tasks {spec}: no task names")
    return list(dict.fromkeys(tasks))


def check_tasks(tasks: list[str]) -> None:
    """Raise one ``TaskError`` naming every unknown task (with the registry's closest names)."""
    from reverie.envs.registry import resolve

    errors = []
    for task in tasks:
        try:
            resolve(task)
        except TaskError as error:
            errors.append(str(error))
    if errors:
        raise TaskError(f"{len(errors)} of {len(tasks)} tasks unknown, nothing scheduled:\n  " + "\n  ".join(errors))


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(item) for item in str(spec).split(",") if item.strip()]
    except ValueError as error:
        raise ConfigError(f"--seeds {spec!r}: not a comma list of integers, e.g. 0,1,2") from error
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {spec!r}: give distinct non-negative integers, e.g. 0,1,2")
    return seeds


def parse_presets(spec: str) -> list[str]:
    """``;`` separates variants, ``,`` composes presets within one: ``atari;atari,no_layer_norm``."""
    variants = [",".join(p.strip() for p in v.split(",") if p.strip()) for v in spec.split(";")]
    variants = [v for v in variants if v]
    if not variants or len(set(variants)) != len(variants):
        raise ConfigError(f"--preset {spec!r}: give distinct variants separated by ';'")
    return variants


def make_plan(root: str | Path, tasks: str | None, seeds: str, presets: str,
              overrides: list[str] | None = None, steps: float | None = None) -> Plan:
    """Parse and validate everything a sweep needs; raises before anything is scheduled."""
    overrides = list(overrides or [])
    if any(item.split("=", 1)[0].strip() == "threads" for item in overrides):
        raise ConfigError("--set threads: a sweep's runs get --cpus-per-run threads (and OMP_NUM_THREADS); "
                          "drop --set threads and use --cpus-per-run")
    if steps is not None and (steps <= 0 or steps != int(steps)):
        raise ConfigError(f"--steps {steps}: give a positive whole number of agent steps")
    plan = Plan(Path(root).resolve(), parse_tasks(tasks), parse_seeds(seeds), parse_presets(presets),
                overrides, None if steps is None else int(steps))
    check_tasks(plan.tasks)
    for preset in plan.presets:
        config = load_config(preset, overrides)  # ConfigError names a bad preset or key
        total = plan.steps or config.run.steps
        plan.runs += [RunSpec(task, seed, preset, total, config.env.action_repeat)
                      for seed in plan.seeds for task in plan.tasks]
    return plan


def write_plan(plan: Plan) -> None:
    """Write ``sweep.yaml``. A study may grow (tasks, seeds, presets) between invocations, but
    its runs' settings may not change, or resumed runs would differ from finished ones."""
    path = plan.root / PLAN_FILE
    if path.exists():
        old = Plan.read(plan.root)
        changed = [name for name in ("overrides", "steps") if getattr(old, name) != getattr(plan, name)]
        if changed:
            raise ConfigError(f"{path} was planned with other {' and '.join(changed)} "
                              f"({', '.join(f'{n}={getattr(old, n)!r}' for n in changed)}); re-run with the "
                              "same --set/--steps to resume it, or use a new --logdir")
    atomic_write_text(path, plan.to_yaml())


# ---------------------------------------------------------------------------------------------
# State of the runs.


def read_status(logdir: Path) -> dict[str, Any]:
    """A run's ``status.json`` (written atomically by ``reverie train``), ``{}`` if absent."""
    try:
        return json.loads((Path(logdir) / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def is_finished(logdir: Path) -> bool:
    return read_status(logdir).get("state") == "finished"


def read_state(root: Path) -> dict[str, Any]:
    """``sweep_state.json``: ``{"sweep": {...}, "runs": {path: {"state", "attempts", ...}}}``."""
    try:
        return json.loads((Path(root) / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {"sweep": {}, "runs": {}}


def write_state(root: Path, state: dict[str, Any]) -> None:
    atomic_write_text(Path(root) / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")


class StudyLock:
    """An exclusive ``flock`` on ``ROOT/.sweep.lock``; the kernel drops it when the sweep dies,
    however it dies, so a killed sweep never blocks its own re-run."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_FILE
        self.file = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self.release()
            return False

    def release(self) -> None:
        if self.file:
            self.file.close()  # closing drops the lock
            self.file = None


def sweep_is_live(root: Path) -> bool:
    """True while some sweep holds the study's lock."""
    if not (Path(root) / LOCK_FILE).exists():
        return False
    lock = StudyLock(root)
    free = lock.acquire()
    lock.release()
    return not free


# ---------------------------------------------------------------------------------------------
# Running.


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
    """Connect to ``address``, or start a private local instance with sensible limits."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
    failed: list[str] = field(default_factory=list)  # out of attempts in this invocation


def schedule(plan: Plan, cpus: float, gpus: float | None, max_concurrent: int | None,
             retries: int, log=print) -> Outcome:
    """Run every unfinished run of ``plan`` on the connected Ray cluster; returns when all are
    finished or out of attempts (``1 + retries`` per run per invocation)."""
    import ray

    cluster = ray.cluster_resources()
    gpus = default_gpus_per_run(cluster) if gpus is None else gpus
    if gpus > cluster.get("GPU", 0) or cpus > cluster.get("CPU", 0):
        raise ConfigError(f"a run asks for {cpus:g} CPUs and {gpus:g} GPUs but the Ray cluster has "
                          f"{cluster.get('CPU', 0):g} and {cluster.get('GPU', 0):g}; lower --cpus-per-run/--gpus-per-run")
    # max_retries: Ray re-executes the task if its worker process dies (node lost, Ray's OOM
    # killer); a failed `reverie train` is a normal return and counts against --retries.
    task = ray.remote(run_training).options(num_cpus=cpus, num_gpus=gpus, max_retries=1)

    state, outcome = read_state(plan.root), Outcome()
    runs = state.setdefault("runs", {})
    queue: deque[RunSpec] = deque()
    for run in plan.runs:
        record = runs.setdefault(run.path, {"attempts": 0})
        if is_finished(plan.logdir(run)):
            record["state"] = "finished"
            outcome.skipped.append(run.path)
        else:
            record["state"] = "queued"
            queue.append(run)
    def sweep_record() -> dict[str, Any]:  # slots follow the cluster's size (autoscaling, lost nodes)
        return {"pid": os.getpid(), "host": os.uname().nodename, "cpus_per_run": cpus, "gpus_per_run": gpus,
                "slots": slots(ray.cluster_resources(), cpus, gpus, max_concurrent, len(plan.runs))}

    state["sweep"] = sweep_record()
    write_state(plan.root, state)
    log(f"sweep: {len(plan.runs)} runs, {len(outcome.skipped)} finished already, {len(queue)} to run, "
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
                result = _result(ray, ref)
                record = runs[run.path]
                record.pop("submitted", None)
                if result["finished"]:
                    record.update(state="finished", last_error=None)
                    log(f"sweep: finished {run.path} ({result['seconds']:.0f} s)")
                    continue
                record.update(state="failed", returncode=result["returncode"], last_error=result["tail"])
                again = tries[run.path] <= retries
                log(f"sweep: FAILED {run.path} (exit {result['returncode']}, attempt {tries[run.path]}"
                    f"/{retries + 1}){'; retrying' if again else ''}; log: {plan.logdir(run) / 'train.log'}")
                if again:
                    record["state"] = "queued"
                    queue.append(run)
            state["sweep"] = sweep_record()
            write_state(plan.root, state)
    finally:
        for ref, run in inflight.items():  # Ctrl-C or an error: stop the runs (they resume next time)
            ray.cancel(ref, force=True)
            runs[run.path]["state"] = "stopped"
            runs[run.path].pop("submitted", None)
        write_state(plan.root, state)
    outcome.finished = [r.path for r in plan.runs if runs[r.path]["state"] == "finished"]
    outcome.failed = [r.path for r in plan.runs if runs[r.path]["state"] == "failed"]
    return outcome


def _result(ray, ref) -> dict[str, Any]:
    """The task's result; a task Ray itself gave up on (worker died twice) becomes a failure."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return {"returncode": None, "finished": False, "seconds": 0.0, "tail": f"Ray: {error}"[-4000:]}


# ---------------------------------------------------------------------------------------------
# The end: Table 1 and the curves.


def summarize(plan: Plan, out=None) -> list[Path]:
    """Per preset variant: print the per-game and the four aggregate scores (Table 1) and
    write ``ROOT/plots/``: ``scores_<preset>.md``, ``curves_<preset>.png`` (learning curves per
    game) and, for Atari games, ``bars_<preset>.png`` (Figure E1, against Rainbow). With
    several variants also ``scores_variants.md`` and ``curves_variants.png``: the variants side
    by side. Only finished runs count. Returns the files written."""
    from reverie.plot import plot_bars, plot_curves
    from reverie.rundirs import group_variants, load_runs
    from reverie.scores import format_markdown, format_markdown_variants, print_table, reports_from_runs

    out, written, finished = out or sys.stdout, [], []
    for preset in plan.presets:
        logdirs = [str(plan.logdir(r)) for r in plan.runs if r.preset == preset and is_finished(plan.logdir(r))]
        if not logdirs:
            continue
        finished += logdirs
        name = preset_dirname(preset)
        print(f"\nPreset {preset}: {len(logdirs)} finished runs", file=out)
        try:
            written.append(plot_curves(group_variants(load_runs(logdirs)), plan.root / PLOTS_DIR / f"curves_{name}.png"))
            report = next(iter(reports_from_runs(logdirs).values()))
        except ReverieError as error:  # e.g. runs too short to have finished an episode
            print(f"no scores: {error}", file=out)
            continue
        print_table(report, file=out)
        written.append(plan.root / PLOTS_DIR / f"scores_{name}.md")
        atomic_write_text(written[-1], format_markdown(report) + "\n")
        games = {row.game: row.score for row in report.rows if row.game}
        if games:
            written.append(plot_bars(games, "rainbow", plan.root / PLOTS_DIR / f"bars_{name}.png"))
    variants = group_variants(load_runs(finished)) if finished else {}
    if len(variants) > 1:  # the runs of each preset lie in ROOT/<preset dir>: one variant each
        written.append(plot_curves(variants, plan.root / PLOTS_DIR / "curves_variants.png"))
        try:
            written.append(plan.root / PLOTS_DIR / "scores_variants.md")
            atomic_write_text(written[-1], format_markdown_variants(reports_from_runs(finished)) + "\n")
        except ReverieError as error:
            written.pop()
            print(f"no comparison of the variants: {error}", file=out)
    if written:
        print(f"\nwrote {', '.join(str(p) for p in written)}", file=out)
    return written


# ---------------------------------------------------------------------------------------------
# Command line.


def cli_sweep(args: argparse.Namespace) -> int:
    """``reverie sweep``: plan, validate, schedule, summarise; ``--status ROOT`` only reports.

    Exit status 0 when every run finished, 1 when some failed after their retries."""
    if args.status:
        from reverie.sweep_status import format_status

        print(format_status(Path(args.status)))
        return 0
    if not args.logdir:
        raise ConfigError("--logdir ROOT is required: the study's root folder")
    if args.local and args.address:
        raise ConfigError("--local and --address exclude each other")
    if args.retries < 0 or (args.max_concurrent is not None and args.max_concurrent < 1):
        raise ConfigError("--retries must be >= 0 and --max-concurrent >= 1")
    if args.cpus_per_run < 0 or (args.gpus_per_run or 0) < 0:
        raise ConfigError("--cpus-per-run and --gpus-per-run must be >= 0")
    plan = make_plan(args.logdir, args.tasks, args.seeds, args.preset, args.set, args.steps)
    plan.root.mkdir(parents=True, exist_ok=True)
    lock = StudyLock(plan.root)
    if not lock.acquire():
        raise ReverieError(f"another `reverie sweep` is running on {plan.root} "
                           f"(it holds {plan.root / LOCK_FILE}); see `reverie sweep --status {plan.root}`")
    try:
        write_plan(plan)
        print(f"sweep: plan written to {plan.root / PLAN_FILE}", flush=True)
        import ray

        start_ray(plan.root, args.address)
        try:
            outcome = schedule(plan, args.cpus_per_run, args.gpus_per_run, args.max_concurrent, args.retries,
                               log=lambda text: print(text, flush=True))
        finally:
            ray.shutdown()
        summarize(plan)
    finally:
        lock.release()
    print(f"\nsweep: {len(outcome.finished)}/{len(plan.runs)} runs finished"
          + (f"; {len(outcome.failed)} failed: {', '.join(outcome.failed)}" if outcome.failed else ""))
    return 1 if outcome.failed else 0
