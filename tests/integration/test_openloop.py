"""The open-loop diagnostic of issue #35 (``benchmarks.diagnostics.openloop``): its error
measures on images built by hand, where the answer is known, and the whole tool on a DMC run
that ``reverie train`` really produced (the real renderer, replay and checkpoint)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.diagnostics import _common, openloop


def moving_square(steps: int = 9) -> torch.Tensor:
    """``[1, T, 3, 8, 8]`` in [−0.5, 0.5]: a grey background with a 2×2 white square that moves one
    column per step (so the median frame is the background)."""
    truth = torch.full((1, steps, 3, 8, 8), -0.2)
    for t in range(steps):
        truth[0, t, :, 3:5, t % 7:t % 7 + 2] = 0.5
    return truth


def test_foreground_error_is_zero_for_the_truth_and_one_without_the_objects():
    truth = moving_square()
    background = torch.full_like(truth, -0.2)
    assert openloop.foreground_error(truth, truth, 0.1) == (0.0, 0.0)
    per_pixel, ratio = openloop.foreground_error(background, truth, 0.1)
    assert ratio == pytest.approx(1.0)
    assert per_pixel == pytest.approx(0.7 ** 2 * 4 / 64)  # 4 of 64 pixels off by 0.7, in each channel
    halfway = (truth + background) / 2
    assert openloop.foreground_error(halfway, truth, 0.1)[1] == pytest.approx(0.25)
    # A change below the threshold is not an object: no foreground, no ratio.
    assert np.isnan(openloop.foreground_error(background, background + 0.01 * truth, 0.1)[1])


def test_reward_error_against_the_constant_guess():
    reward = np.array([0.0, 1.0, 0.0, 1.0])
    assert openloop.reward_error(reward, reward) == pytest.approx((0.0, 0.5, 1.0))
    rmse, constant, correlation = openloop.reward_error(np.full(4, 0.5), reward)
    assert (rmse, constant) == pytest.approx((0.5, 0.5)) and np.isnan(correlation)  # the constant guess itself
    assert openloop.reward_error(1 - reward, reward)[2] == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def dmc_run(tmp_path_factory) -> Path:
    pytest.importorskip("dm_control")
    logdir = tmp_path_factory.mktemp("openloop") / "run"
    args = ["--task", "dmc_cartpole_swingup", "--preset", "dmc,debug", "--set", "device=cpu",
            "--set", "run.prefill=120", "--set", "run.pretrain=2", "--set", "run.train_every=20",
            "--set", "run.eval_every=0", "--set", "run.checkpoint_every=240", "--set", "env.time_limit=120"]
    result = subprocess.run([sys.executable, "-m", "reverie", "train", *args, "--logdir", str(logdir),
                             "--steps", "240"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return logdir


def test_the_tool_reads_a_real_dmc_run(dmc_run, tmp_path):
    out = tmp_path / "table.md"
    result = subprocess.run([sys.executable, "-m", "benchmarks.diagnostics.openloop", str(dmc_run), "--steps", "120",
                             "--chunk", "30", "--prior", "1,5", "--out", str(out)],
                            capture_output=True, text=True, timeout=600,
                            env={k: v for k, v in os.environ.items() if k != "MUJOCO_GL"})
    assert result.returncode == 0, result.stderr  # MUJOCO_GL unset: the tool sets it, as the CLI does
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()[2:]]
    assert [r[2] for r in rows] == ["posterior", "1-step prior", "5-step prior"]
    assert [r[1] for r in rows] == ["240"] * 3
    # A k-step prediction counts where no episode starts within its k steps (61 stored steps per episode).
    starts = _common.newest_steps(dmc_run, 120, 30)[0]["is_first"]
    inside = [sum(not starts[i, j + 1:j + k + 1].any() for i in range(4) for j in range(30 - k)) for k in (1, 5)]
    assert [int(r[3].replace(",", "")) for r in rows] == [120, *inside] and inside[1] < 4 * 25 < inside[0]
    for r in rows:
        image, foreground = float(r[4]), float(r[5])
        rmse, constant = (float(x.strip("()")) for x in r[6].split())
        assert 0 < image < 0.25 and 0 < foreground < 10 and rmse >= 0 and constant > 0


def test_updates_measure_the_held_out_steps_before_and_after_and_leave_the_run_alone(dmc_run, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in dmc_run.rglob("*") if p.is_file()}
    out = tmp_path / "table.md"
    result = subprocess.run([sys.executable, "-m", "benchmarks.diagnostics.openloop", str(dmc_run), "--updates", "3",
                             "--holdout", "60", "--chunk", "30", "--prior", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "3 world-model updates in" in result.stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()[2:]]
    assert [(r[0], r[2]) for r in rows] == [(f"{dmc_run}, held out, +{n} updates", state)
                                            for n in (0, 3) for state in ("posterior", "2-step prior")]
    assert [r[3] for r in rows][::2] == ["60", "60"]  # the newest 60 steps, measured twice
    assert rows[0][4:] != rows[2][4:]  # the updates changed the model
    assert {p: p.stat().st_mtime_ns for p in dmc_run.rglob("*") if p.is_file()} == before


def test_foreground_error_counts_only_the_frames_asked_for():
    truth = moving_square()
    model = torch.full_like(truth, -0.2)  # no objects anywhere
    model[0, :4] = truth[0, :4]  # exact on the first 4 frames
    where = torch.zeros(truth.shape[:2], dtype=torch.bool)
    where[0, :4] = True
    assert openloop.foreground_error(model, truth, 0.1, where=where) == (0.0, 0.0)
    where[0, :] = ~where[0, :]
    assert openloop.foreground_error(model, truth, 0.1, where=where)[1] == pytest.approx(1.0)
    assert 0 < openloop.foreground_error(model, truth, 0.1)[1] < 1  # all frames: some exact, some absent
