"""``wait`` (OpenMP's wait policy) reaches the process through the CLI, before torch loads: a
run's ``status.json`` records the policy its threads ran with; the user's ``OMP_WAIT_POLICY``
wins; a value other than passive or active is one line naming the choices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

RUN = ["train", "--task", "gym_CartPole-v1", "--preset", "gym,debug", "--steps", "30", "--set", "run.prefill=20",
       "--set", "run.eval_every=0", "--set", "device=cpu", "--set", "threads=2"]


def reverie(args: list[str], user_wait: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the suite's conftest sets it
    env.update({"OMP_WAIT_POLICY": user_wait} if user_wait else {})
    return subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize(("wait", "user", "expected"), [("active", None, "active"), ("passive", None, "passive"),
                                                         ("active", "PASSIVE", "passive")])
def test_the_runs_threads_wait_as_configured_unless_the_user_says_otherwise(tmp_path, wait, user, expected):
    result = reverie([*RUN, "--set", f"wait={wait}", "--logdir", str(tmp_path / "run")], user)
    assert result.returncode == 0, result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert (status["wait"], status["torch_threads"]) == (expected, 2)


def test_the_cartpole_preset_spins_two_threads():
    from reverie.config import load_config

    config = load_config("gym,cartpole")
    assert (config.threads, config.wait) == (2, "active")


def test_an_unknown_wait_policy_is_one_line():
    result = reverie([*RUN, "--set", "wait=spin"])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "wait" in result.stderr and "passive" in result.stderr and "active" in result.stderr
