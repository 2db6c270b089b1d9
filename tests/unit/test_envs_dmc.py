"""DeepMind Control from pixels: 64×64 RGB, action repeat 2, truncation at the time limit."""

import numpy as np
import pytest

pytest.importorskip("dm_control")

from reverie.config import load_config  # noqa: E402
from reverie.envs import make_env  # noqa: E402
from reverie.errors import TaskError  # noqa: E402


def make(task="dmc_walker_walk", mode="train", **env):
    overrides = [f"task={task}"] + [f"env.{k}={v}" for k, v in env.items()]
    return make_env(load_config("dmc", overrides), mode)


@pytest.fixture(scope="module")
def walker():
    env = make()
    yield env
    env.close()


def test_walker_renders_64x64_rgb(walker):
    obs = walker.reset()
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["is_first"] and obs["reward"] == 0.0 and obs["image"].std() > 0
    assert walker.obs_space["image"].shape == (64, 64, 3)
    assert walker.act_space.shape == (6,) and walker.act_space.low.min() == -1 and walker.act_space.high.max() == 1
    assert walker.action_repeat == 2 and walker.camera == 0


def test_actions_outside_the_box_are_clipped(walker):
    walker.reset()
    state = walker.get_state()
    inside = walker.step(np.ones(6))
    walker.set_state(state)
    outside = walker.step(5 * np.ones(6))
    np.testing.assert_array_equal(inside["image"], outside["image"])
    assert inside["reward"] == outside["reward"]
    with pytest.raises(TaskError, match="non-finite"):
        walker.step(np.full(6, np.nan))
    with pytest.raises(TaskError, match=r"shape \(6,\)"):
        walker.step(np.zeros(3))


def test_time_limit_is_truncation_not_terminal():
    env = make(time_limit=10)  # frames: 5 agent steps at action repeat 2
    env.reset()
    obs = [env.step(np.zeros(6)) for _ in range(5)]
    assert [o["is_last"] for o in obs] == [False] * 4 + [True]
    assert not any(o["is_terminal"] for o in obs)


def test_same_seed_same_episode_eval_seed_differs():
    first = [make().reset()["image"], make().reset()["image"], make(mode="eval").reset()["image"]]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])  # walker's initial pose is random


def test_unknown_dmc_task_suggests():
    with pytest.raises(TaskError, match="dmc_walker_walk"):
        make("dmc_walker_wlak")


@pytest.mark.slow
def test_episode_is_1000_control_steps_and_quadruped_uses_camera_2():
    env = make(time_limit=0)
    env.reset()
    steps, obs = 0, {"is_last": False}
    while not obs["is_last"]:
        obs, steps = env.step(np.zeros(6)), steps + 1
    assert steps == 500 and not obs["is_terminal"]  # 1000 frames at action repeat 2
    assert make("dmc_quadruped_run").camera == 2
