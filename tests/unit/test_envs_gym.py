"""Gymnasium tasks: vector/image observations, terminated vs truncated, space errors."""

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from reverie.config import load_config
from reverie.envs import make_env
from reverie.envs.gym import GymEnv
from reverie.errors import TaskError


def make(task="gym_CartPole-v1", **env):
    overrides = [f"task={task}", "env.action_repeat=1"] + [f"env.{k}={v}" for k, v in env.items()]
    return make_env(load_config(None, overrides))


class Toy(gymnasium.Env):
    """Records the last action; terminates at step 3; configurable spaces."""

    def __init__(self, observation_space=None, action_space=None):
        self.observation_space = observation_space or spaces.Box(-1, 1, (2,), np.float64)
        self.action_space = action_space or spaces.Box(-2.0, 4.0, (1,), np.float32)
        self.last_action, self.t = None, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.last_action, self.t = action, self.t + 1
        return self.observation_space.sample(), 1.0, self.t == 3, False, {}


def test_cartpole_vector_and_terminal():
    env = make()
    obs = env.reset()
    assert env.obs_space["vector"].shape == (4,) and obs["vector"].dtype == np.float32
    assert env.act_space.n == 2 and obs["is_first"] and obs["reward"] == 0.0
    while not obs["is_last"]:
        obs = env.step(np.array([1.0, 0.0]))  # always push left: the pole falls
    assert obs["is_terminal"]  # gymnasium `terminated`


def test_truncation_is_last_but_not_terminal():
    env = GymEnv(gymnasium.make("CartPole-v1", max_episode_steps=5), seed=0)
    env.reset()
    obs = [env.step(i % 2) for i in range(5)]  # alternate: the pole stays up
    assert [o["is_last"] for o in obs] == [False] * 4 + [True] and not obs[-1]["is_terminal"]
    env = make(time_limit=3)  # reverie's own limit, in frames
    env.reset()
    obs = [env.step(i % 2) for i in range(3)]
    assert obs[-1]["is_last"] and not obs[-1]["is_terminal"]


def test_same_seed_same_episode():
    a, b = make(), make()
    np.testing.assert_array_equal(a.reset()["vector"], b.reset()["vector"])


def test_box_actions_rescaled_and_clipped():
    toy = Toy()
    env = GymEnv(toy)
    env.reset()
    assert env.act_space == spaces.Box(-1, 1, (1,), np.float32)
    for action, expected in [(-1.0, -2.0), (0.0, 1.0), (1.0, 4.0), (3.0, 4.0)]:
        env.step(np.array([action]))
        assert toy.last_action[0] == pytest.approx(expected)


def test_image_observations_resized():
    env = GymEnv(Toy(observation_space=spaces.Box(0, 255, (96, 80, 3), np.uint8)), size=(64, 64))
    assert env.obs_space["image"].shape == (64, 64, 3)
    assert env.reset()["image"].shape == (64, 64, 3)


@pytest.mark.parametrize("obs_space, act_space, what", [
    (spaces.Dict({"a": spaces.Discrete(2)}), None, "observation space Dict"),
    (spaces.Text(5), None, "observation space Text"),
    (spaces.Box(0, 1, (3, 4, 5), np.float32), None, "observation space Box"),
    (None, spaces.MultiDiscrete([2, 3]), "action space MultiDiscrete"),
    (None, spaces.Tuple([spaces.Discrete(2)]), "action space Tuple"),
])
def test_unsupported_spaces_say_what_is_supported(obs_space, act_space, what):
    with pytest.raises(TaskError, match=f"unsupported {what}.*supported observations: Box of rank 1"):
        GymEnv(Toy(obs_space, act_space))


def test_get_state_restores_cartpole():
    env = make()
    env.reset()
    for i in range(5):
        env.step(i % 2)
    state = env.get_state()
    expected = [env.step(i % 2)["vector"] for i in range(5)]
    fresh = make()
    fresh.set_state(state)
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(fresh.step(i % 2)["vector"], want)
    assert GymEnv(Toy()).get_state() is None  # no `unwrapped.state`: unsupported


def test_bench_env_reports_speeds():
    from reverie.envs.bench import bench_env

    result = bench_env("gym_CartPole-v1", 50)
    assert result["agent_steps"] == 50 and result["action_repeat"] == 1
    assert result["agent_steps_per_s"] > 0 and result["frames_per_s"] == pytest.approx(result["agent_steps_per_s"], rel=1e-3)
