"""Task names, the registry, the listing and the error messages."""

import subprocess
import sys

import pytest
from gymnasium import spaces

from reverie.config import load_config
from reverie.envs import (
    action_dim,
    env_seed,
    eval_seed,
    format_tasks,
    list_tasks,
    make_env,
    register,
    registry,
)
from reverie.envs.gym import GymEnv
from reverie.errors import TaskError


def config(task, *overrides):
    return load_config(None, [f"task={task}", *overrides])


@pytest.mark.parametrize("task, closest", [
    ("atari_pongg", "atari_pong"), ("atari_montezumas_revenge", "atari_montezuma_revenge"),
    ("dmc_walker_wlak", "dmc_walker_walk"), ("gym_CartPole-v9", "gym_CartPole-v1"), ("cartpole", None),
])
def test_unknown_task_suggests_closest(task, closest):
    with pytest.raises(TaskError, match="unknown task") as error:
        make_env(config(task))
    if closest:
        assert f"closest: {closest}" in str(error.value)
    assert "atari_<rom>, dmc_<domain>_<task>, gym_<id>" in str(error.value)


def test_missing_suite_names_the_extra(monkeypatch):
    real = registry._suite_names

    def without_atari(suite):
        if suite == "atari":
            raise TaskError("ale_py is not installed")
        return real(suite)

    monkeypatch.setattr(registry, "_suite_names", without_atari)
    with pytest.raises(TaskError, match=r"needs the atari suite, which is not installed: pip install 'reverie\[atari\]'"):
        make_env(config("atari_pong"))
    assert "not installed: pip install 'reverie[atari]'" in format_tasks("atari")


def test_import_and_listing_without_optional_suites():
    code = ("import sys; sys.modules['ale_py'] = sys.modules['dm_control'] = None\n"
            "import reverie.envs as e; print(e.format_tasks('all'))\n"
            "from reverie.config import load_config\n"
            "try: e.make_env(load_config(None, ['task=dmc_walker_walk']))\n"
            "except e.registry.TaskError as error: print(error)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'reverie[atari]'" in out and "pip install 'reverie[dmc]'" in out
    assert "task 'dmc_walker_walk' needs the dmc suite, which is not installed" in out


def test_format_tasks_marks_the_55_paper_games():
    pytest.importorskip("ale_py")
    text = format_tasks("atari")
    assert text.count("* atari_") == 55
    assert "* atari_pong" in text and "* atari_jamesbond" in text and "  atari_adventure" in text
    assert "gym_<id>" in format_tasks("gym")


def test_list_tasks():
    pytest.importorskip("ale_py")
    pytest.importorskip("dm_control")
    tasks = list_tasks()
    assert {"atari_pong", "atari_montezuma_revenge", "dmc_walker_walk", "dmc_ball_in_cup_catch",
            "gym_CartPole-v1"} <= set(tasks)
    assert "atari_combat" not in tasks  # listed by ale-py but not loadable


def test_register_custom_task():
    register("toy_cartpole", lambda cfg, seed: GymEnv(__import__("gymnasium").make("CartPole-v1"), seed))
    try:
        env = make_env(config("toy_cartpole"))
        assert "vector" in env.reset() and "toy_cartpole" in list_tasks("custom")
        with pytest.raises(TaskError, match="already registered"):
            register("toy_cartpole", lambda cfg, seed: None)
    finally:
        registry._CUSTOM.pop("toy_cartpole")


def test_seeds_and_action_dim():
    assert env_seed(3, "train") == 3 and env_seed(3, "eval") == eval_seed(3, 0) != 3
    assert env_seed(3, "eval", step=500) == eval_seed(3, 500) != eval_seed(3, 0)
    with pytest.raises(TaskError, match="'train' or 'eval'"):
        env_seed(0, "test")
    assert action_dim(spaces.Discrete(18)) == 18 and action_dim(spaces.Box(-1, 1, (6,))) == 6
