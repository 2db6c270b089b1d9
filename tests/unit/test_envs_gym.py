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
    from reverie.envs.speed import bench_env

    result = bench_env("gym_CartPole-v1", 50)
    assert result["agent_steps"] == 50 and result["action_repeat"] == 1
    assert result["agent_steps_per_s"] > 0 and result["frames_per_s"] == pytest.approx(result["agent_steps_per_s"], rel=1e-3)


class FlippedFrames(gymnasium.Env):
    """A pixel env that hands out flipped views (negative strides), as MuJoCo's renderer does;
    the episode ends after 25 steps."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.frame = 0, self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        return self.frame[::-1], {}

    def step(self, action):
        self.t += 1
        self.frame = np.roll(self.frame, int(action) + 1, axis=1)
        return self.frame[::-1], float(action == 1), self.t == 25, False, {}


def test_flipped_view_frames_become_contiguous_and_train(tmp_path):
    """No cast and no resize is needed here, so GymEnv passes the env's array along: the env
    contract (make_obs) must still hand out C-contiguous frames, which torch.as_tensor needs
    when the agent acts and which the replay stores. A short real training run proves it."""
    from reverie.envs import register
    from reverie.run.train import train

    env = GymEnv(FlippedFrames(), seed=0, size=(64, 64))
    inner = env.env
    obs = env.reset()
    assert obs["image"].flags["C_CONTIGUOUS"] and np.array_equal(obs["image"], inner.frame[::-1])
    step = env.step(np.eye(3, dtype=np.float32)[1])
    assert step["image"].flags["C_CONTIGUOUS"] and np.array_equal(step["image"], inner.frame[::-1])

    register("test_flipped_frames", lambda config, seed: GymEnv(FlippedFrames(), seed, size=tuple(config.env.size)),
             overwrite=True)
    config = load_config("gym,debug", ["task=test_flipped_frames", "device=cpu", "run.steps=60", "run.prefill=20",
                                       "run.train_every=10", "run.eval_every=30", "run.log_every=30",
                                       "run.checkpoint_every=60"])
    summary = train(config, tmp_path / "run", quiet=True)
    rows = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "train/model_loss" in line]
    assert summary["step"] == 60 and summary["last_eval"] is not None and rows
