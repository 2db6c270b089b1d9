"""Every task family through the real CLI, as a new user runs it: `reverie train` with
updates and a checkpoint, a resume to twice the steps, then `reverie eval`. The env is the
real producer of every observation (DMC once crashed here at its first update: its frames
are flipped views that only a training step turned into tensors)."""

import json
from pathlib import Path

import pytest
from test_train import read_metrics, reverie

from reverie.checkpoint import load_checkpoint
from reverie.config import load_config_file

FAMILIES = {
    "atari": ("atari_pong", "atari,debug", "ale_py"),
    "dmc": ("dmc_walker_walk", "dmc,debug", "dm_control"),
    "gym_discrete_vector": ("gym_CartPole-v1", "gym,debug", None),
    "gym_continuous_vector": ("gym_Pendulum-v1", "gym,debug", None),
    "gym_image": ("gym_ALE/Pong-v5", "gym,debug", "ale_py"),  # 210×160 RGB frames, resized to 64×64
    "minatar": ("minatar_breakout", "minatar,debug", "minatar"),
}
STEPS = 150
RUN = ["--set", "device=cpu", "--set", "run.prefill=60", "--set", "run.pretrain=2", "--set", "run.train_every=10",
       "--set", "run.log_every=75", "--set", "run.eval_every=0", "--set", "run.checkpoint_every=75",
       "--set", "run.eval_episodes=1"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_checkpoints_resumes_and_evaluates(tmp_path: Path, family: str):
    task, presets, package = FAMILIES[family]
    if package:
        pytest.importorskip(package)
    logdir = tmp_path / "run"
    # An eval episode must end: a short time limit for the tasks whose episodes are long.
    limit = {"atari": ["--set", "env.time_limit=400"], "dmc": ["--set", "env.time_limit=200"],
             "gym_image": ["--set", "env.time_limit=300"]}.get(family, [])
    reverie("train", "--task", task, "--preset", presets, *RUN, *limit, "--logdir", str(logdir),
            "--steps", str(STEPS))
    first = read_metrics(logdir)
    assert any("train/model_loss" in r for r in first), "no update ran"
    assert load_checkpoint(logdir).step == STEPS
    # Resume: same logdir, twice the steps; the run continues from the checkpoint.
    out = reverie("train", "--logdir", str(logdir), "--steps", str(2 * STEPS)).stdout
    assert "run finished" in out
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 2 * STEPS
    assert status["updates"] > 0
    records = read_metrics(logdir)
    losses = [r["train/model_loss"] for r in records if "train/model_loss" in r]
    assert len(losses) >= 3 and all(v == v and abs(v) < 1e6 for v in losses)
    for name in ("model", "actor", "critic"):  # non-finite gradients skip updates silently otherwise
        skipped = [r[f"train/{name}_skipped"] for r in records if "train/model_loss" in r]
        assert skipped and not any(skipped), f"{name} updates skipped: {skipped}"
    assert [p.name for p in sorted((logdir / "checkpoints").iterdir())][-1] == f"{2 * STEPS:012d}"
    out = reverie("eval", "--logdir", str(logdir), "--episodes", "1").stdout
    assert "mean return" in out
    evals = [json.loads(x) for x in (logdir / "eval.jsonl").read_text().splitlines()]
    policies = ["mode", "sample"] if load_config_file(logdir / "config.yaml").run.eval_sample else ["mode"]
    assert [e["policy"] for e in evals] == policies  # the policies the run's own evaluations play
    assert all(e["step"] == 2 * STEPS and e["length"] > 0 for e in evals)
