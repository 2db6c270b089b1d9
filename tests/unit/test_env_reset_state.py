"""Between episodes an env hands out what its next reset draws from (``get_reset_state``); a
fresh env given it (``set_reset_state``) starts the same next episode as the env that went on."""

import numpy as np
import pytest

from reverie.config import load_config
from reverie.envs import make_env

TASKS = [("gym_CartPole-v1", "gym", []), ("gym_MountainCar-v0", "gym", []), ("gym_Pendulum-v1", "gym", []),
         ("atari_pong", "atari", ["env.time_limit=200"]), ("dmc_walker_walk", "dmc", ["env.time_limit=20"])]


def play_episode(env, rng: np.random.Generator, limit: int = 400) -> None:
    obs = env.reset()
    for _ in range(limit):
        obs = env.step(random_action(env, rng))
        if obs["is_last"]:
            return
    raise AssertionError("the episode did not end")


def random_action(env, rng):
    space = env.act_space
    if hasattr(space, "n"):
        return np.eye(space.n, dtype=np.float32)[rng.integers(space.n)]
    return rng.uniform(-1, 1, space.shape).astype(np.float32)


def observations(env, rng, steps: int = 10) -> list[np.ndarray]:
    obs = [env.reset()]
    for _ in range(steps):
        obs.append(env.step(random_action(env, rng)))
    return [np.concatenate([np.ravel(o.get("vector", o.get("image"))), [o["reward"]]]) for o in obs]


@pytest.mark.parametrize("task, preset, overrides", TASKS, ids=[t[0] for t in TASKS])
def test_the_next_episode_after_a_restore_is_the_one_the_env_would_have_had(task, preset, overrides):
    config = load_config(preset, [f"task={task}", "seed=4", *overrides])
    going_on, restored = make_env(config), make_env(config)
    try:
        play_episode(going_on, np.random.default_rng(0))
        restored.set_reset_state(going_on.get_reset_state())
        expected = observations(going_on, np.random.default_rng(1))
        assert all(np.array_equal(a, b) for a, b in zip(expected, observations(restored, np.random.default_rng(1))))
        # a fresh env with the same seed repeats its first episode's start instead
        repeat = observations(make_env(config), np.random.default_rng(1))
        assert not all(np.array_equal(a, b) for a, b in zip(expected, repeat)), "the test cannot tell them apart"
    finally:
        for env in (going_on, restored):
            env.close()


@pytest.mark.parametrize("task, preset, overrides", [t for t in TASKS if t[0] != "gym_MountainCar-v0"],
                         ids=[t[0] for t in TASKS if t[0] != "gym_MountainCar-v0"])
def test_a_restored_env_continues_its_episode_bit_exactly(task, preset, overrides):
    """Mid-episode ``get_state``/``set_state``: the same rewards and observations to the last
    bit (DMC needs MuJoCo's warm start and time, not only qpos/qvel/act)."""
    config = load_config(preset, [f"task={task}", "seed=2", *overrides, "env.time_limit=0"])
    original, restored = make_env(config), make_env(config)
    try:
        rng = np.random.default_rng(3)
        original.reset()
        for _ in range(5):
            assert not original.step(random_action(original, rng))["is_last"]
        restored.set_state(original.get_state())
        for _ in range(15):
            action = random_action(original, rng)
            a, b = original.step(action), restored.step(action)
            assert a["reward"] == b["reward"] and a["is_last"] == b["is_last"]
            assert np.array_equal(a.get("vector", a.get("image")), b.get("vector", b.get("image")))
            if a["is_last"]:
                break
    finally:
        original.close()
        restored.close()
