"""`reverie train` on MinAtar Breakout with the grid encoder and decoder
(``world_model.encoder.kind=grid``, ``decoder.kind=grid``) through the real CLI: the grid
shape comes from the real env's space, every update is applied, and the saved world model
is the grid nets' (the real twin of the hand-built spaces of ``unit/test_grid_nets.py``)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("minatar")

from reverie.checkpoint import load_checkpoint  # noqa: E402
from reverie.config import load_config_file  # noqa: E402

# The minatar protocol at the debug preset's tiny sizes, with the grid nets.
TASK = ["--task", "minatar_breakout", "--preset", "minatar,debug", "--set", "device=cpu",
        "--set", "world_model.encoder.kind=grid", "--set", "world_model.decoder.kind=grid",
        "--set", "run.prefill=100", "--set", "run.log_every=100", "--set", "run.eval_every=0",
        "--set", "run.checkpoint_every=300", "--set", "run.pretrain=2"]


def test_minatar_trains_with_the_grid_nets(tmp_path):
    logdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "reverie", "train", *TASK, "--logdir", str(logdir),
                             "--steps", "300"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    config = load_config_file(logdir / "config.yaml")
    assert config.world_model.encoder.kind == config.world_model.decoder.kind == "grid"
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "train/model_loss" in r]
    assert trained and all(r[f"train/{p}_skipped"] == 0 for r in trained for p in ("model", "actor", "critic"))
    assert all(r["train/image_loss"] > 0 for r in trained)  # a Bernoulli likelihood per cell: −log p > 0
    weights = load_checkpoint(logdir).tensors["agent"]["world_model"]
    # Breakout's 4 object channels, read from the env's grid (10, 10, 4): in and out of the convs.
    depth = config.world_model.encoder.grid_depth
    assert tuple(weights["encoder.grid.net.0.weight"].shape) == (depth, 4, 3, 3)
    assert tuple(weights["heads.decoder.grid.linear.weight"].shape)[0] == 10 * 10 * config.world_model.decoder.grid_depth
    assert tuple(weights["heads.decoder.grid.net.4.weight"].shape) == (4, config.world_model.decoder.grid_depth, 3, 3)
    assert not [key for key in weights if ".mlp." in key and ("encoder" in key or "decoder" in key)]
