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


The package, one module per part, with no import cycle (each imports only those before it):
``plan`` (what to run), ``state`` (the runs' and the study's state on disk), ``ray_runner``
(Ray scheduling of ``reverie train`` subprocesses), ``status`` (``--status`` report) and
``cli`` (the command, and the summary at the end).
"""

from reverie.sweep.cli import cli_sweep, summarize
from reverie.sweep.plan import (
    PLAN_FILE,
    Plan,
    RunSpec,
    check_tasks,
    make_plan,
    parse_presets,
    parse_seeds,
    parse_tasks,
    preset_dirname,
    write_plan,
)
from reverie.sweep.ray_runner import (
    Outcome,
    default_gpus_per_run,
    ray_temp_dir,
    run_threads,
    run_training,
    schedule,
    slots,
    start_ray,
    train_argv,
)
from reverie.sweep.state import (
    LOCK_FILE,
    STATE_FILE,
    StudyLock,
    is_finished,
    read_state,
    read_status,
    sweep_is_live,
    write_state,
)

__all__ = [
    "LOCK_FILE", "PLAN_FILE", "STATE_FILE", "Outcome", "Plan", "RunSpec", "StudyLock", "check_tasks", "cli_sweep",
    "default_gpus_per_run", "is_finished", "make_plan", "parse_presets", "parse_seeds", "parse_tasks",
    "preset_dirname", "ray_temp_dir", "read_state", "read_status", "run_threads", "run_training", "schedule",
    "slots", "start_ray", "summarize", "sweep_is_live", "train_argv", "write_plan", "write_state",
]
