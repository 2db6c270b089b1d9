"""`reverie sweep`: planning and validation (fast), and real sweeps of `reverie train` on a
local Ray instance (slow): 2 Atari games × 2 seeds, and a sweep killed mid-way, then resumed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reverie.cli import main
from reverie.config import load_config
from reverie.errors import ConfigError
from reverie.sweep import (
    PLAN_FILE,
    STATE_FILE,
    Plan,
    StudyLock,
    make_plan,
    parse_presets,
    parse_seeds,
    parse_tasks,
    ray_temp_dir,
    slots,
    train_argv,
    write_plan,
    write_state,
)
from reverie.sweep.status import format_status, run_rows, study_eta

# ------------------------------------------------------------------------------------------
# Fast: everything before Ray.


def test_task_lists_expand_and_dedupe(tmp_path):
    assert len(parse_tasks("atari55")) == 55 and parse_tasks("atari55")[0] == "atari_alien"
    assert parse_tasks("atari_pong, atari_breakout,atari_pong") == ["atari_pong", "atari_breakout"]
    assert parse_tasks("minatar5") == ["minatar_asterix", "minatar_breakout", "minatar_freeway", "minatar_seaquest",
                                       "minatar_space_invaders"]
    assert parse_tasks("minatar_freeway,minatar5")[:2] == ["minatar_freeway", "minatar_asterix"]
    listing = tmp_path / "tasks.txt"
    listing.write_text("# my games\natari_pong\n\natari_breakout  # short episodes\n")
    assert parse_tasks(f"@{listing}") == ["atari_pong", "atari_breakout"]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_presets("atari;atari, no_layer_norm") == ["atari", "atari,no_layer_norm"]
    for bad in ("0,0", "-1", "a"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_bad_task_fails_before_anything_is_scheduled(tmp_path, monkeypatch, capsys):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for an invalid study")

    monkeypatch.setattr("reverie.sweep.cli.start_ray", no_ray)
    root = tmp_path / "study"
    code = main(["sweep", "--tasks", "atari_pong,atari_pongg,atari_breakout", "--seeds", "0,1",
                 "--preset", "debug", "--logdir", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    assert "atari_pongg" in err and "closest: atari_pong" in err
    assert not root.exists()  # not even the plan
    code = main(["sweep", "--tasks", "atari_pong", "--preset", "debug;debug,no_such_preset", "--logdir", str(root)])
    assert code == 2 and "no_such_preset" in capsys.readouterr().err and not root.exists()


def test_plan_names_variant_folders_and_refuses_changed_settings(tmp_path):
    plan = make_plan(tmp_path, "atari_pong,atari_breakout", "0,1", "debug;debug,no_layer_norm",
                     ["replay.batch=2"], steps=300)
    assert [r.path for r in plan.runs[:3]] == ["debug/atari_pong/0", "debug/atari_breakout/0", "debug/atari_pong/1"]
    assert plan.runs[-1].path == "debug+no_layer_norm/atari_breakout/1"
    assert plan.runs[0].total_frames == 300 * 4
    argv = train_argv(plan, plan.runs[-1])
    assert argv[:7] == ["train", "--task", "atari_breakout", "--preset", "debug,no_layer_norm", "--seed", "1"]
    assert argv[-4:] == ["--steps", "300", "--set", "replay.batch=2"]
    write_plan(plan)
    assert Plan.read(tmp_path) == plan
    write_plan(make_plan(tmp_path, "atari_pong", "0,1,2", "debug", ["replay.batch=2"], steps=300))  # may grow
    with pytest.raises(ConfigError, match="overrides"):
        write_plan(make_plan(tmp_path, "atari_pong", "0", "debug", ["replay.batch=4"], steps=300))


def test_slots_are_bounded_by_every_resource():
    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert slots(cluster, cpus=1, gpus=1, max_concurrent=None, runs=10) == 2
    assert slots(cluster, cpus=1, gpus=0.5, max_concurrent=None, runs=10) == 4
    assert slots(cluster, cpus=4, gpus=0, max_concurrent=None, runs=10) == 4
    assert slots(cluster, cpus=1, gpus=0, max_concurrent=3, runs=10) == 3
    assert slots(cluster, cpus=1, gpus=0, max_concurrent=None, runs=2) == 2


def test_cpus_per_run_become_the_runs_threads_over_the_presets(tmp_path, monkeypatch):
    """The Ray task's body on a real `reverie train`: --cpus-per-run 2 gives the run
    OMP_NUM_THREADS=2 (even where the sweep's own environment says otherwise) and 2 torch
    threads, although the debug preset sets `threads: 1`."""
    import subprocess as sp

    from reverie.sweep import run_threads, run_training

    assert load_config("debug").threads == 1 and [run_threads(c) for c in (0.5, 1, 2, 2.9)] == [1, 1, 2, 2]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # e.g. exported on the head node
    seen, call = [], sp.call

    def spy(argv, **kwargs):  # what the run's process is started with; it still runs for real
        seen.append((argv, kwargs["env"]))
        return call(argv, **kwargs)

    monkeypatch.setattr(sp, "call", spy)
    plan = make_plan(tmp_path, "gym_CartPole-v1", "0", "gym,debug", ["device=cpu", "run.prefill=20",
                                                                      "run.eval_every=0"], steps=40)
    (run,) = plan.runs
    threads = run_threads(2)
    result = run_training(train_argv(plan, run, threads), str(plan.logdir(run)), threads)
    assert result["finished"], result["tail"]
    (argv, env), = seen
    assert env["OMP_NUM_THREADS"] == "2" and argv[-2:] == ["--set", "threads=2"]
    status = json.loads((plan.logdir(run) / "status.json").read_text())
    assert status["torch_threads"] == 2
    with pytest.raises(ConfigError, match="--cpus-per-run"):
        make_plan(tmp_path, "atari_pong", "0", "debug", ["threads=4"])


def _synthetic_study(root: Path) -> Plan:
    """A planned 2 × 2 study: one run finished, one half-way, one failed, one never started."""
    plan = make_plan(root, "atari_pong,atari_breakout", "0,1", "debug", steps=1000)  # 4000 frames per run
    write_plan(plan)
    statuses = {"debug/atari_pong/0": {"state": "finished", "step": 1000, "frames": 4000, "wall_seconds": 40.0, "last_eval_return": -20.5},
                "debug/atari_breakout/0": {"state": "running", "frames": 2000, "wall_seconds": 40.0, "last_eval_return": 1.0},
                "debug/atari_pong/1": {"state": "running", "frames": 0, "wall_seconds": 1.0, "last_eval_return": None}}
    for path, status in statuses.items():
        (root / path).mkdir(parents=True)
        (root / path / "status.json").write_text(json.dumps(status))
    write_state(root, {"sweep": {"slots": 2}, "runs": {
        "debug/atari_pong/0": {"state": "finished", "attempts": 1},
        "debug/atari_breakout/0": {"state": "queued", "attempts": 1, "submitted": 0.0},  # status.json newer
        "debug/atari_pong/1": {"state": "failed", "attempts": 3, "last_error": "Traceback ..."},
        "debug/atari_breakout/1": {"state": "queued", "attempts": 0}}})  # waiting for a slot
    return plan


def test_status_table_and_eta_of_a_stopped_study(tmp_path):
    _synthetic_study(tmp_path)
    rows, sweep = run_rows(tmp_path, live=False)
    assert [r.state for r in rows] == ["finished", "stopped", "failed", "pending"]
    # Speeds: 10 and 20 s per 1000 frames; runs without frames use the mean (15). Frames left:
    # 2000 at 20, then 4000 and 4000 at 15 → (40 + 60 + 60) s over 2 slots = 80 s.
    assert study_eta(rows, slots=2) == pytest.approx(80.0)
    assert study_eta(rows, slots=10) == pytest.approx(60.0)  # no less than the longest run left
    text = format_status(tmp_path)
    assert "debug/atari_breakout/0  stopped   2,000/4,000  1.0          5h33m" in text
    assert "-20.5" in text and "ETA of the study: 1m20s at 2 runs at a time" in text
    assert "1 failed, 1 finished, 1 pending, 1 stopped" in text and "not running" in text


def test_status_shows_a_run_trained_outside_the_sweep_as_running(tmp_path):
    # A run resumed by hand while no sweep runs: its process holds the run directory's lock
    # (`reverie train`'s hold_run; with a real process: test_train.py's kill -9 test), so
    # --status shows it running, not stopped, and stopped again once the lock is free.
    from reverie.utils import Flock

    _synthetic_study(tmp_path)
    with Flock(tmp_path / "debug" / "atari_breakout" / "0") as held:
        assert held.acquire()
        rows, _ = run_rows(tmp_path, live=False)
        assert [r.state for r in rows] == ["finished", "running", "failed", "pending"]
    rows, _ = run_rows(tmp_path, live=False)
    assert [r.state for r in rows] == ["finished", "stopped", "failed", "pending"]


def test_status_of_a_live_study_trusts_the_sweeps_record(tmp_path):
    _synthetic_study(tmp_path)
    lock = StudyLock(tmp_path)
    assert lock.acquire()
    try:
        rows, _ = run_rows(tmp_path, live=True)
        assert [r.state for r in rows] == ["finished", "running", "failed", "queued"]
        assert "sweep: running" in format_status(tmp_path)
    finally:
        lock.release()


def test_a_run_finished_at_a_smaller_target_is_extended_not_skipped(tmp_path):
    """A pilot moved into a study (or a study whose --steps grew) finished at fewer steps than the
    plan's: the sweep queues it, ``--status`` shows it stopped, and the summary leaves it out."""
    from reverie.sweep.ray_runner import Outcome, _queue_unfinished

    plan = make_plan(tmp_path, "gym_CartPole-v1", "0,1", "gym,debug", ["device=cpu", "run.prefill=100",
                     "run.eval_every=0", "run.log_every=100", "run.pretrain=2"], steps=300)
    write_plan(plan)
    short, done = plan.runs
    for run, steps in ((short, 200), (done, 300)):
        argv = train_argv(plan, run)
        argv[argv.index("--steps") + 1] = str(steps)
        assert main(argv) == 0
    assert json.loads((plan.logdir(short) / "status.json").read_text())["state"] == "finished"
    outcome, records = Outcome(), {}
    assert [r.path for r in _queue_unfinished(plan, records, outcome)] == [short.path]
    assert outcome.skipped == [done.path] and records[short.path]["state"] == "queued"
    assert [r.state for r in run_rows(tmp_path, live=False)[0]] == ["stopped", "finished"]


def test_started_runs_set_up_otherwise_than_the_sweep_now_would_are_refused(tmp_path):
    """A run whose saved config differs from what the sweep would resume it with (the preset's
    file or a --set changed since it started) stops the sweep before anything is scheduled,
    naming the run and the key; a pilot copied in (its own logdir, fewer steps) is welcome."""
    plan = make_plan(tmp_path / "study", "gym_CartPole-v1", "0,1", "gym,debug", ["device=cpu", "run.prefill=100",
                     "run.eval_every=0", "run.log_every=100", "run.pretrain=2"], steps=300)
    pilot, other = plan.runs
    argv = train_argv(plan, pilot)
    argv[argv.index("--logdir") + 1], argv[argv.index("--steps") + 1] = str(tmp_path / "pilot"), "200"
    assert main(argv) == 0
    shutil.move(tmp_path / "pilot", plan.logdir(pilot))
    make_plan(plan.root, "gym_CartPole-v1", "0,1", "gym,debug", plan.overrides, 300)
    assert main(train_argv(plan, other) + ["--set", "replay.batch=3", "--steps", "200"]) == 0
    with pytest.raises(ConfigError, match=r"1 of the started runs .* gym\+debug/gym_CartPole-v1/1, replay.batch: 3 → 4"):
        make_plan(plan.root, "gym_CartPole-v1", "0,1", "gym,debug", plan.overrides, 300)


def test_runs_recorded_as_finished_elsewhere_are_not_run_again(tmp_path):
    """``--recorded``: a study that spans sittings whose ``runs/`` was lost keeps the runs that
    ``benchmarks.record_study`` recorded as finished, and runs the rest; a run directory under
    ROOT always wins over its recorded copy."""
    from benchmarks import record_study
    from reverie.sweep.ray_runner import Outcome, _queue_unfinished

    root, out = tmp_path / "study", tmp_path / "results"
    plan = make_plan(root, "gym_CartPole-v1", "0,1,2", "gym,debug", ["device=cpu", "run.prefill=100",
                     "run.eval_every=100", "run.log_every=100", "run.pretrain=2"], steps=300)
    write_plan(plan)
    done, short, never = plan.runs
    for run, steps in ((done, 300), (short, 200)):
        argv = train_argv(plan, run)
        argv[argv.index("--steps") + 1] = str(steps)
        assert main(argv) == 0
    record_study.record(root / "gym+debug", out, 300, 2, 100, False, None)  # out/<task>/<seed>: one preset
    shutil.rmtree(root / "gym+debug")  # runs/ lost between sittings
    with pytest.raises(ConfigError, match="--recorded .*record_study"):
        make_plan(root, "gym_CartPole-v1", "0,1,2", "gym,debug", plan.overrides, 300, recorded=tmp_path / "nothing")
    plan = make_plan(root, "gym_CartPole-v1", "0,1,2", "gym,debug", plan.overrides, 300, recorded=out)
    write_plan(plan)
    outcome, records = Outcome(), {}
    assert [r.path for r in _queue_unfinished(plan, records, outcome)] == [short.path, never.path]
    assert outcome.skipped == outcome.recorded == [done.path] and records[done.path] == {"attempts": 0, "state": "finished",
                                                                     "recorded": str(out.resolve())}
    rows = run_rows(root, live=False)[0]
    assert [(r.state, r.frames) for r in rows] == [("recorded", 300), ("pending", 0), ("pending", 0)]
    assert "3 runs: 2 pending, 1 recorded" in format_status(root)
    (plan.logdir(done)).mkdir(parents=True)  # the run started again under ROOT: it goes on
    (plan.logdir(done) / "status.json").write_text(json.dumps({"state": "running", "step": 0}))
    outcome, records = Outcome(), {}
    assert len(_queue_unfinished(plan, records, outcome)) == 3 and not outcome.skipped
    assert [r.state for r in run_rows(root, live=False)[0]] == ["stopped", "pending", "pending"]
    (plan.logdir(done) / "status.json").unlink()
    plan.recorded = None  # without --recorded the copies count for nothing
    assert len(_queue_unfinished(plan, {}, Outcome())) == 3
    plan.recorded = str(out)
    recorded = out / "gym_CartPole-v1" / "0" / "run.json"  # a copy taken while the run still ran
    recorded.write_text(json.dumps({**json.loads(recorded.read_text()), "finished": False}))
    assert len(_queue_unfinished(plan, {}, Outcome())) == 3


def test_status_cli_on_a_folder_without_a_study(tmp_path, capsys):
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    assert "sweep.yaml" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Slow: the real `reverie train` under a local Ray instance.

# A few hundred agent steps per run; episodes truncated at 400 frames (100 agent steps) so that
# even these short runs finish episodes and evaluations, and `reverie scores` has numbers.
SWEEP = ["--preset", "debug", "--steps", "400", "--set", "env.time_limit=400", "--set", "run.eval_every=200",
         "--set", "run.checkpoint_every=200", "--set", "run.log_every=100", "--set", "device=cpu"]


@pytest.fixture
def root(tmp_path):
    """The study root; afterwards, the local Ray instance's temp dir (outside tmp_path) goes too."""
    root = tmp_path / "study"
    yield root
    shutil.rmtree(ray_temp_dir(root), ignore_errors=True)


def sweep_command(root: Path, tasks: str, seeds: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reverie", "sweep", "--tasks", tasks, "--seeds", seeds, "--logdir", str(root),
            "--cpus-per-run", "1", *SWEEP, *extra]


def run_sweep(command: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"sweep failed:\n{result.stdout}\n{result.stderr}"
    return result


def status_of(logdir: Path) -> dict:
    try:
        return json.loads((logdir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


@pytest.mark.slow
def test_sweep_of_two_games_two_seeds_ends_in_scores_and_plots(root):
    start = time.time()
    out = run_sweep(sweep_command(root, "atari_pong,atari_breakout", "0,1")).stdout
    print(f"sweep of 4 runs: {time.time() - start:.0f} s")
    runs = [root / "debug" / task / seed for task in ("atari_pong", "atari_breakout") for seed in ("0", "1")]
    for logdir in runs:
        assert status_of(logdir)["state"] == "finished" and status_of(logdir)["step"] == 400
        assert (logdir / "metrics.jsonl").exists() and (logdir / "train.log").exists()
    assert (root / PLAN_FILE).exists()
    state = json.loads((root / STATE_FILE).read_text())
    assert {r["state"] for r in state["runs"].values()} == {"finished"}
    assert "gamer_median" in out and "clipped_record_mean" in out  # the aggregate table
    assert "4/4 runs finished" in out
    for name in ("curves_debug.png", "bars_debug.png", "scores_debug.md"):
        assert (root / "plots" / name).stat().st_size > 0
    status = subprocess.run([sys.executable, "-m", "reverie", "sweep", "--status", str(root)],
                            capture_output=True, text=True, check=True).stdout
    assert status.count("finished") >= 4 and "ETA of the study: 0m00s" in status
    # Running the finished study again only reports it.
    again = run_sweep(sweep_command(root, "atari_pong,atari_breakout", "0,1")).stdout
    assert "4 finished already, 0 to run" in again


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_runs(root, tmp_path):
    """Kill -9 the sweep's process group once the first run finished and the second has its
    first checkpoint (step 200 of 400); the re-run skips the first and resumes the second."""
    command = sweep_command(root, "atari_breakout", "0,1", "--max-concurrent", "1")
    first, second = root / "debug/atari_breakout/0", root / "debug/atari_breakout/1"
    with open(tmp_path / "killed.log", "w") as log:
        sweep = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 300
            while not (second / "checkpoints/000000000200/COMPLETE").exists():
                assert sweep.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.time() < deadline, "the second run did not reach its first checkpoint in time"
                time.sleep(0.2)
        finally:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert status_of(first)["state"] == "finished" and status_of(second).get("state") != "finished"
    assert not _train_processes(second), "a run outlived its killed sweep"
    metrics = first / "metrics.jsonl"
    finished_before = (metrics.stat().st_mtime_ns, metrics.read_text())
    checkpointed_before = _rows_upto(second / "metrics.jsonl", 200)

    out = run_sweep(command).stdout
    assert "1 finished already, 1 to run" in out
    assert (metrics.stat().st_mtime_ns, metrics.read_text()) == finished_before  # not redone
    assert status_of(second)["state"] == "finished" and status_of(second)["step"] == 400
    # Resumed from its checkpoint, not restarted: the rows logged before it (wall times included) remain.
    assert checkpointed_before and _rows_upto(second / "metrics.jsonl", 200) == checkpointed_before
    state = json.loads((root / STATE_FILE).read_text())["runs"]
    assert state["debug/atari_breakout/0"]["attempts"] == 1 and state["debug/atari_breakout/1"]["attempts"] == 2
    assert "sweep: not running" in format_status(root)


def _rows_upto(path: Path, step: int) -> list[str]:
    return [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]


def test_failing_run_is_retried_a_bounded_number_of_times_and_reported(root):
    """A real `reverie train` failure, cheap to provoke: the run directory holds the study's
    config and a checkpoint marked complete whose files are gone, so train refuses to start the
    run over (exit 2) in every attempt. A retry goes before the runs still queued (a run that
    died late has the most done): seed 0's two attempts, then seed 1's."""
    overrides = [item for flag, item in zip(SWEEP, SWEEP[1:]) if flag == "--set"]
    for seed in (0, 1):
        logdir = root / f"debug/atari_pong/{seed}"
        load_config("debug", [*overrides, "task=atari_pong", f"seed={seed}"]).save(logdir / "config.yaml")
        (logdir / "checkpoints/000000000200").mkdir(parents=True)
        (logdir / "checkpoints/000000000200/COMPLETE").touch()
    result = subprocess.run(sweep_command(root, "atari_pong", "0,1", "--retries", "1", "--max-concurrent", "1"),
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    failures = re.findall(r"FAILED debug/atari_pong/(\d) \(exit 2, attempt (\d)/2\)", result.stdout)
    assert failures == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert "FAILED debug/atari_pong/0 (exit 2, attempt 1/2); retrying" in result.stdout
    assert "0/2 runs finished; 2 failed: debug/atari_pong/0" in result.stdout
    record = json.loads((root / STATE_FILE).read_text())["runs"]["debug/atari_pong/0"]
    assert record["state"] == "failed" and record["attempts"] == 2 and "could be loaded" in record["last_error"]
    assert "failed" in format_status(root)


def _train_processes(logdir: Path, wait: float = 10.0) -> list[str]:
    """Command lines of live `reverie train` processes on ``logdir`` after up to ``wait`` s."""
    deadline = time.time() + wait
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"train" in cmdline and str(logdir).encode() in cmdline:
                found.append(b" ".join(cmdline).decode(errors="replace"))
        if not found or time.time() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.slow
def test_sweep_of_two_variants_threads_scores_and_plots(root, tmp_path):
    """`;` variants on local Ray with --cpus-per-run 2: each run gets 2 threads although the
    debug preset says 1; the study root is then scored and plotted per variant."""
    command = [sys.executable, "-m", "reverie", "sweep", "--tasks", "atari_pong", "--seeds", "0,1",
               "--logdir", str(root), "--cpus-per-run", "2", *SWEEP]
    command[command.index("debug")] = "debug;debug,no_layer_norm"
    out = run_sweep(command).stdout
    assert "4/4 runs finished" in out and "(2 CPU, 0 GPU each)" in out
    for variant in ("debug", "debug+no_layer_norm"):
        for seed in ("0", "1"):
            logdir = root / variant / "atari_pong" / seed
            status = status_of(logdir)
            assert status["state"] == "finished" and status["torch_threads"] == 2
            assert "OMP_NUM_THREADS=2" in (logdir / "train.log").read_text()
        assert load_config(None, base=yaml.safe_load((logdir / "config.yaml").read_text())).threads == 2
    assert (root / "plots" / "scores_variants.md").read_text().count("## Variant") == 2
    assert (root / "plots" / "curves_variants.png").stat().st_size > 0
    scores = subprocess.run([sys.executable, "-m", "reverie", "scores", str(root), "--format", "json"],
                            capture_output=True, text=True, check=True)
    report = json.loads(scores.stdout)
    assert sorted(report["variants"]) == ["debug", "debug+no_layer_norm"]
    assert all(v["games"][0]["seeds"] == 2 for v in report["variants"].values())
    curves = tmp_path / "curves.svg"
    subprocess.run([sys.executable, "-m", "reverie", "plot", str(root), "--out", str(curves)], check=True)
    assert "debug+no_layer_norm (mean over seeds)" in curves.read_text()
