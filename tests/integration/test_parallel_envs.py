"""``run.envs`` through the real CLI: N envs in worker processes give the same run as N envs
in the run's own process; every count is in agent steps summed over the envs; each episode
is logged once with its env; and a worker that dies, or a run that is told to stop, ends
within seconds with one line, no leftover process and no half-written replay file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reverie.checkpoint import list_checkpoints, load_checkpoint

CARTPOLE = ["--task", "gym_CartPole-v1", "--preset", "gym,debug", "--set", "device=cpu", "--set", "deterministic=true",
            "--set", "run.prefill=100", "--set", "run.log_every=50", "--set", "run.eval_every=0",
            "--set", "run.pretrain=2"]


def environ() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def reverie(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True, timeout=600,
                            env=environ())
    assert result.returncode == 0, f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def records(logdir: Path) -> list[dict]:
    wall = {"time", "fps", "updates_per_second"}
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in wall} for line in lines]


def test_workers_and_in_process_envs_give_the_same_run(tmp_path):
    runs = {}
    for parallel in ("process", "none"):
        runs[parallel] = tmp_path / parallel
        reverie("train", *CARTPOLE, "--set", "run.envs=2", "--set", f"env.parallel={parallel}",
                "--logdir", str(runs[parallel]), "--steps", "301")
    assert records(runs["process"]) == records(runs["none"])
    a, b = load_checkpoint(runs["process"]), load_checkpoint(runs["none"])
    assert a.step == b.step == 302  # a round of two envs is two agent steps: the run ends on a round's end
    assert all((a.tensors["agent"][k] == b.tensors["agent"][k]).all() for k in a.tensors["agent"]
               if hasattr(a.tensors["agent"][k], "shape"))
    episodes = [r for r in records(runs["process"]) if "episode/return" in r]
    assert {r["episode/env"] for r in episodes} == {0, 1}  # both envs play, each episode logged once with its env
    assert [r["episodes"] for r in episodes] == list(range(1, len(episodes) + 1))
    # 302 agent steps summed over the envs: the replay holds them all, plus each episode's first step.
    replay = a.meta["replay"]
    assert replay["step"] == 302 + len(episodes) + 2 - sum(not m for m in [a.meta["mid_episode"],
                                                                          a.meta["more"]["1"]["mid_episode"]])


def children(pid: int) -> list[int]:
    """The worker processes of a run (spawned multiprocessing children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def start_long_run(logdir: Path) -> tuple[subprocess.Popen, list[int]]:
    """A run of two envs in workers that checkpoints often; returns once it has a checkpoint."""
    process = subprocess.Popen([sys.executable, "-m", "reverie", "train", *CARTPOLE, "--set", "run.envs=2",
                                "--set", "run.checkpoint_every=100", "--logdir", str(logdir), "--steps", "1000000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ())
    deadline = time.time() + 300
    while not list_checkpoints(logdir):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.2)
    workers = children(process.pid)
    assert len(workers) == 2, workers
    return process, workers


def stopped(process: subprocess.Popen, within: float) -> tuple[str, float]:
    started = time.time()
    try:
        _, stderr = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"the run did not stop within {within} s")
    return stderr, time.time() - started


@pytest.mark.slow  # ~1 min: a run that must reach its first checkpoint
def test_a_killed_worker_stops_the_run_with_one_line(tmp_path):
    logdir = tmp_path / "run"
    process, workers = start_long_run(logdir)
    os.kill(workers[1], signal.SIGKILL)
    stderr, _ = stopped(process, within=30)
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "env worker 1" in lines[0] and "last complete checkpoint is step" in lines[0], lines[0]
    assert f"reverie train --logdir {logdir}" in lines[0], lines[0]
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "failed" and status["resume_step"] == int(list_checkpoints(logdir)[-1].name)
    assert not [pid for pid in workers if alive(pid)]
    assert not list((logdir / "replay").glob("*.tmp")) and not list((logdir / "replay").glob(".*"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, state", [(signal.SIGTERM, "stopped"), (signal.SIGINT, "stopped")])
def test_stopping_the_run_stops_its_workers(tmp_path, signum, state):
    logdir = tmp_path / "run"
    process, workers = start_long_run(logdir)
    os.kill(process.pid, signum)
    stopped(process, within=30)
    assert json.loads((logdir / "status.json").read_text())["state"] == state
    assert not [pid for pid in workers if alive(pid)]


def test_more_workers_than_twice_the_cores_warn_but_run():
    from reverie.config import load_config
    from reverie.run.train import warn_envs

    many = 2 * (os.cpu_count() or 1) + 1
    with pytest.warns(UserWarning, match=f"run.envs = {many} worker processes on .* cores"):
        warn_envs(load_config("gym", [f"run.envs={many}"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in the run's own process they step one after another: no warning
        warn_envs(load_config("gym", [f"run.envs={many}", "env.parallel=none"]))
