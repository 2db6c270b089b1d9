"""``benchmarks.learning_parity`` end to end on tiny settings: the official loop
(``dreamerv2.api.train`` in this venv, through the script's ``official-run``) and ``reverie
train`` on CartPole, one seed, 400 agent steps each, side by side; then ``report``. About a
minute on 2 CPU cores (most of it TF's start and graph tracing).

Checks that both runs finished and logged training-episode returns, that each side's own
config file holds what the one table (``MAPPING``) says, and that ``summary.json`` has the
documented shape. The table's keys are also checked against the official ``configs.yaml`` for
every task of the study."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import learning_parity as lp
from tests.parity.official import CODE, common

ROOT = Path(__file__).resolve().parents[2]

TASK = "gym_CartPole-v1"
STEPS = 400
TINY = ["run.prefill=100", "run.pretrain=2", "run.log_every=100", "replay.batch=4", "replay.length=16",
        "world_model.rssm.deter=32", "world_model.rssm.hidden=32", "world_model.rssm.stoch=4",
        "world_model.rssm.classes=4", "world_model.encoder.mlp_units=32", "world_model.decoder.mlp_units=32",
        "world_model.heads.units=32", "behavior.actor.units=32", "behavior.critic.units=32", "behavior.horizon=5"]


@pytest.mark.parametrize("task", list(lp.TASKS))
def test_the_official_config_takes_every_update_of_the_table(task):
    configs = yaml.safe_load((CODE / "configs.yaml").read_text())
    _, updates = lp.resolve(task, 0, lp.TASKS[task].steps, 1, [])
    defaults = common.Config(configs["defaults"])
    assert set(updates) <= set(defaults.flat)  # no key the official code does not know
    config = defaults.update(updates)  # and every value converts to the official key's type
    assert config.replay.minlen == config.replay.maxlen == config.dataset.length


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Runs ``run`` then ``report`` as ``make learning-parity`` does; returns the folder."""
    folder = tmp_path_factory.mktemp("learning_parity")
    args = ["--tasks", TASK, "--seeds", "0", "--steps", str(STEPS), "--jobs", "2", "--workdir",
            str(folder / "runs"), "--out", str(folder / "out"), "--official-python", sys.executable,
            "--reverie", str(Path(sys.executable).with_name("reverie")), *[a for s in TINY for a in ("--set", s)]]
    for command in ("run", "report"):
        result = subprocess.run([sys.executable, "-m", "benchmarks.learning_parity", command, *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.mark.parametrize("side", lp.SIDES)
def test_both_runs_finished_and_logged_training_returns(study, side):
    logdir = study / "runs" / TASK / side / "0"
    assert json.loads((logdir / "harness.json").read_text())["returncode"] == 0
    assert lp.run_state(side, logdir, STEPS) == "finished"
    returns = lp.episodes(side, logdir)
    assert len(returns) >= 1 and (returns[:, 0] <= STEPS + 50).all() and (returns[:, 1] >= 1).all()


def test_each_side_ran_the_configuration_the_table_gives(study):
    runs = study / "runs" / TASK
    mine = yaml.safe_load((runs / "reverie" / "0" / "config.yaml").read_text())
    theirs = yaml.safe_load((runs / "official" / "0" / "config.yaml").read_text())  # written by api.train
    assert (mine["replay"]["ongoing"], mine["replay"]["minlen"], mine["replay"]["length"]) == (False, 16, 16)
    assert theirs["replay"] == {"capacity": 2e6, "ongoing": False, "minlen": 16, "maxlen": 16, "prioritize_ends": True}
    assert mine["run"]["pretrain"] == 2 and theirs["pretrain"] == 1  # + the official building update
    assert (theirs["rssm"]["deter"], theirs["rssm"]["discrete"], theirs["imag_horizon"]) == (32, 4, 5)
    assert (theirs["jit"], theirs["precision"], theirs["steps"]) == (True, 32, STEPS)


def test_report_writes_the_documented_summary(study):
    out = study / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"machine", "tasks"} and summary["machine"]
    entry = summary["tasks"][TASK]
    assert entry["steps"] == STEPS and len(entry["auc_diff_ci95"]) == 2
    for side in lp.SIDES:
        part = entry[side]
        assert part["seeds"] == [0] and part["crashed"] == [] and part["unfinished"] == []
        assert len(part["auc"]) == len(part["final"]) == 1 and isinstance(part["auc"][0], float)
        assert part["sec_per_1k_steps"] > 0
    low, high = entry["auc_diff_ci95"]  # one seed a side: the interval is the one difference
    assert low == high == pytest.approx(entry["reverie"]["auc"][0] - entry["official"]["auc"][0])
    assert (out / "cartpole.png").stat().st_size > 0
    assert "| gym_CartPole-v1 | official | 0 |" in (out / "README.md").read_text()
