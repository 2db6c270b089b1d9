"""`reverie train` on a MinAtar game through the real CLI: the preset's protocol reaches the
run directory, and a run resumed mid-episode continues exactly (the env's state is saved)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("minatar")

from reverie.checkpoint import load_checkpoint  # noqa: E402

# The minatar protocol (env settings) at the debug preset's tiny sizes.
TASK = ["--task", "minatar_breakout", "--preset", "minatar,debug", "--set", "device=cpu",
        "--set", "run.prefill=100", "--set", "run.log_every=100", "--set", "run.eval_every=150",
        "--set", "run.checkpoint_every=150", "--set", "run.pretrain=2", "--set", "deterministic=true"]


def reverie(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def comparable(logdir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    drop = ("time", "fps", "updates_per_second")
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


@pytest.mark.slow  # ~2 min on the shared 2-core VM: three CLI runs; the env's own resume is a unit test
def test_minatar_run_resumes_exactly(tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    reverie("train", *TASK, "--logdir", str(whole), "--steps", "300")
    reverie("train", *TASK, "--logdir", str(halves), "--steps", "150")
    middle = load_checkpoint(halves)
    assert middle.meta["mid_episode"] and middle.meta["env"]["frames"] > 0  # resumed inside an episode
    reverie("train", *TASK, "--logdir", str(halves), "--steps", "300")
    config = (whole / "config.yaml").read_text()
    assert "sticky_actions: 0.1" in config and "action_repeat: 1" in config
    rows = comparable(whole)
    assert any("eval/return" in r for r in rows) and any("train/model_loss" in r for r in rows)
    assert rows == comparable(halves)
    a, b = load_checkpoint(whole).tensors["agent"], load_checkpoint(halves).tensors["agent"]
    for name in ["world_model", "actor", "critic"]:
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"
