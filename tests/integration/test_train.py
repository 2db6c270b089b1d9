"""`reverie train` / `reverie eval` end to end through the real CLI, on the debug preset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reverie.checkpoint import load_checkpoint

CARTPOLE = ["--task", "gym_CartPole-v1", "--preset", "gym,debug"]
SMALL = ["--set", "device=cpu", "--set", "run.prefill=100", "--set", "run.log_every=100",
         "--set", "run.eval_every=200", "--set", "run.checkpoint_every=200", "--set", "run.pretrain=2"]


def reverie(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def read_metrics(logdir: Path) -> list[dict]:
    return [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_every_output_and_eval_reads_it(tmp_path):
    logdir = tmp_path / "run"
    out = reverie("train", *CARTPOLE, *SMALL, "--logdir", str(logdir), "--steps", "400").stdout
    assert "run finished" in out
    assert (logdir / "config.yaml").exists()
    records = read_metrics(logdir)
    keys = set().union(*records)
    for key in ["step", "frames", "episode/return", "episode/length", "eval/return", "fps",
                "updates_per_second", "train/model_loss", "train/actor_loss", "train/critic_loss"]:
        assert key in keys, key
    assert all(r["frames"] == r["step"] * 1 for r in records)  # gym preset: action repeat 1
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 400
    assert [p.name for p in sorted((logdir / "checkpoints").iterdir())] == ["000000000200", "000000000400"]
    assert any((logdir / "replay").glob("*.npz"))
    assert list(logdir.glob("events.out.tfevents.*"))

    out = reverie("eval", "--logdir", str(logdir), "--episodes", "2").stdout
    assert "mean return" in out
    lines = [json.loads(x) for x in (logdir / "eval.jsonl").read_text().splitlines()]
    assert [x["episode"] for x in lines] == [0, 1] and all(x["step"] == 400 for x in lines)


def test_resume_refuses_model_changes_and_accepts_longer_runs(tmp_path):
    logdir = tmp_path / "run"
    reverie("train", *CARTPOLE, *SMALL, "--logdir", str(logdir), "--steps", "200")
    refused = reverie("train", "--logdir", str(logdir), "--set", "world_model.rssm.deter=64", check=False)
    assert refused.returncode == 2
    assert "world_model.rssm.deter" in refused.stderr and "Traceback" not in refused.stderr
    reverie("train", "--logdir", str(logdir), "--steps", "300")
    assert json.loads((logdir / "status.json").read_text())["step"] == 300


def _comparable(records: list[dict]) -> list[dict]:
    wall = {"time", "fps", "updates_per_second"}
    return [{k: v for k, v in r.items() if k not in wall} for r in records]


def test_resume_is_exact(tmp_path):
    """N steps in one go equal N/2 steps + resume for N/2 (same metrics, same weights)."""
    args = [*CARTPOLE, *SMALL, "--set", "deterministic=true"]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    reverie("train", *args, "--logdir", str(whole), "--steps", "500")
    reverie("train", *args, "--logdir", str(halves), "--steps", "250")
    reverie("train", *args, "--logdir", str(halves), "--steps", "500")
    assert _comparable(read_metrics(whole)) == _comparable(read_metrics(halves))
    a = load_checkpoint(whole).tensors["agent"]
    b = load_checkpoint(halves).tensors["agent"]
    for name in ["world_model", "actor", "critic", "slow_critic"]:
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"


def test_kill_minus_9_then_resume_continues_from_last_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "reverie", "train", *CARTPOLE, *SMALL, "--logdir", str(logdir),
           "--steps", "3000", "--set", "run.checkpoint_every=100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((logdir / "checkpoints").glob("*/COMPLETE"))) < 2:
        time.sleep(0.2)
    time.sleep(0.7)  # kill somewhere between checkpoints, possibly mid-write
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(logdir).step
    assert killed_at >= 200
    reverie("train", "--logdir", str(logdir), "--steps", str(killed_at + 200))
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == killed_at + 200
    steps = [r["step"] for r in read_metrics(logdir)]
    assert steps == sorted(steps)  # lines after the checkpoint were dropped, then re-logged


def test_bad_task_is_a_clear_error(tmp_path):
    result = reverie("train", "--task", "atari_pongg", "--preset", "atari,debug", "--logdir", str(tmp_path / "x"),
                     check=False)
    assert result.returncode == 2
    assert "atari_pong" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("task, presets", [("atari_pong", "atari,debug")])
def test_pixel_task_writes_open_loop_video(tmp_path, task, presets):
    logdir = tmp_path / "run"
    reverie("train", "--task", task, "--preset", presets, "--logdir", str(logdir), "--steps", "300",
            "--set", "device=cpu", "--set", "run.prefill=150", "--set", "run.log_every=150",
            "--set", "run.eval_every=0", "--set", "world_model.encoder.depth=4")
    assert sorted(p.name for p in (logdir / "videos").glob("openl_*.gif")) == ["openl_000000000150.gif", "openl_000000000300.gif"]
