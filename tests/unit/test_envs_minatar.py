"""MinAtar's five games (minatar_<game>): settings, observations against the package's own
state, time limit, seeding, exact get_state/set_state, clear errors."""

import json

import numpy as np
import pytest

minatar = pytest.importorskip("minatar")

from reverie.checkpoint import merge_arrays, split_arrays  # noqa: E402
from reverie.config import load_config  # noqa: E402
from reverie.envs import make_env  # noqa: E402
from reverie.envs.minatar import GAMES, MinAtarEnv, minatar_reference  # noqa: E402
from reverie.errors import TaskError  # noqa: E402
from reverie.spaces import grid_shape  # noqa: E402

CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}


def make(game="breakout", mode="train", **env):
    overrides = [f"task=minatar_{game}"] + [f"env.{k}={v}" for k, v in env.items()]
    return make_env(load_config("minatar", overrides), mode)


def play(env, actions):
    """Steps ``actions``, resetting after an episode ends; the observations, resets included."""
    out = []
    for action in actions:
        obs = env.step(int(action))
        out.append(obs)
        if obs["is_last"]:
            out.append(env.reset())
    return out


@pytest.mark.parametrize("game", GAMES)
def test_preset_settings_and_spaces(game):
    env = make(game)
    assert env.env.sticky_action_prob == pytest.approx(0.1)
    assert getattr(env.env.env, "ramping", True)  # breakout and freeway do not ramp
    # The preset's minimal set (as the other DreamerV2 port); Seaquest's is all 6.
    assert env.actions == env.env.minimal_action_set() and env.act_space.n == len(env.actions)
    assert env.act_space.n == {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}[game]
    assert env.time_limit == 10_000
    space = env.obs_space["vector"]
    assert space.shape == (10 * 10 * CHANNELS[game],) and space.dtype == np.float32
    assert grid_shape(space) == (10, 10, CHANNELS[game])  # for world_model.encoder.kind=grid
    obs = env.reset()
    assert obs["vector"].dtype == np.float32 and set(np.unique(obs["vector"])) <= {0.0, 1.0}
    assert obs["is_first"] and not obs["is_last"] and obs["reward"] == 0.0
    assert env.render().shape == (80, 80, 3) and env.render().dtype == np.uint8


def test_all_six_actions_and_the_minimal_set():
    env = make("breakout", full_action_space=True)
    assert env.act_space.n == 6 and env.actions == list(range(6))  # Young & Tian's setting
    env = make("breakout", full_action_space=False)
    assert env.act_space.n == 3 and env.actions == [0, 1, 3]  # no-op, left, right


@pytest.mark.parametrize("game", GAMES)
def test_observations_and_rewards_match_the_package(game):
    """Same seed, same actions: our vector is the package's bool grid, flattened row-major (so
    the space's grid shape folds it back)."""
    actions = np.random.default_rng(0).integers(6, size=300)
    env = MinAtarEnv(game, seed=3, time_limit=0)
    reference = minatar.Environment(game, sticky_action_prob=0.1, difficulty_ramping=True)
    reference.seed(3)
    reference.reset()
    first = env.reset()["vector"]
    np.testing.assert_array_equal(first, reference.state().reshape(-1))
    np.testing.assert_array_equal(first.reshape(grid_shape(env.obs_space["vector"])), reference.state())
    for action in actions:
        obs = env.step(action)
        reward, terminal = reference.act(int(action))
        np.testing.assert_array_equal(obs["vector"], reference.state().reshape(-1).astype(np.float32))
        assert obs["reward"] == reward and obs["is_terminal"] == terminal == obs["is_last"]
        if terminal:
            env.reset(), reference.reset()


def test_game_over_is_terminal_time_limit_is_not():
    env = make("breakout", time_limit=5)
    env.reset()
    obs = [env.step(0) for _ in range(5)]
    assert [o["is_last"] for o in obs] == [False] * 4 + [True] and not any(o["is_terminal"] for o in obs)
    with pytest.raises(TaskError, match="call reset"):
        env.step(0)
    env = make("breakout", time_limit=0)  # no limit: a no-op paddle loses the ball
    env.reset()
    for _ in range(200):
        obs = env.step(0)
        if obs["is_last"]:
            break
    assert obs["is_last"] and obs["is_terminal"]


def test_same_seed_same_episodes_other_seed_differs():
    actions = np.random.default_rng(1).integers(3, size=400)  # breakout: the minimal set
    runs = [[o["vector"] for o in [e.reset()] + play(e, actions)] for e in (make(), make(), make(mode="eval"))]
    assert all(np.array_equal(x, y) for x, y in zip(runs[0], runs[1]))
    assert not all(np.array_equal(x, y) for x, y in zip(runs[0], runs[2]))


@pytest.mark.parametrize("game", GAMES)
def test_get_state_continues_the_same_episode(game):
    """A restored env (through the checkpoint's array/JSON split) repeats the same future:
    game objects, difficulty ramp, sticky-action RNG and the counters."""
    actions = np.random.default_rng(2).integers(6, size=600)
    env = make(game, full_action_space=True)
    env.reset()
    play(env, actions[:300])
    tensors, meta = split_arrays(env.get_state())
    json.dumps(meta)  # the non-array part goes into the checkpoint's JSON
    expected = [o["vector"] for o in play(env, actions[300:])]
    fresh = make(game, mode="eval", full_action_space=True)  # another seed: everything must come from the state
    fresh.reset()
    play(fresh, actions[:37])
    fresh.set_state(merge_arrays(tensors, meta))
    got = [o["vector"] for o in play(fresh, actions[300:])]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_unknown_game_lists_the_five():
    with pytest.raises(TaskError) as error:
        make_env(load_config("minatar", ["task=minatar_pong"]))
    message = str(error.value)
    assert "'pong'" in message and all(f"minatar_{game}" in message for game in GAMES)
    assert "\n" not in message


def test_a_preset_with_frame_skip_is_refused():
    with pytest.raises(TaskError, match=r"set env.action_repeat=1"):
        make_env(load_config("atari", ["task=minatar_breakout"]))


def test_reference_table():
    table = minatar_reference()
    assert set(table["random"]["scores"]) == set(GAMES)
    assert table["random"]["scores"]["space_invaders"] == pytest.approx(2.87)
    assert table["dqn_1m"]["steps"] == 1_000_000


def random_returns(game: str, full_action_space: bool, steps: int = 20_000) -> float:
    """Mean episode return of a uniform random policy over ``steps`` frames (env seed 0,
    numpy ``default_rng(0)``): how the reference table's random rows were measured."""
    env, rng = MinAtarEnv(game, 0, full_action_space=full_action_space), np.random.default_rng(0)
    returns, frames = [], 0
    while frames < steps:
        env.reset()
        total, done = 0.0, False
        while not done:
            obs = env.step(int(rng.integers(env.act_space.n)))
            total, frames, done = total + obs["reward"], frames + 1, obs["is_last"]
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.parametrize("game", ["breakout", "space_invaders"])
def test_reference_random_rows_are_what_the_package_gives(game):
    """The minimal-action random row is the measured one (5× of it is the learning test's bar)."""
    table = minatar_reference()
    assert table["random_minimal"]["actions"] == "minimal"
    assert random_returns(game, full_action_space=False) == pytest.approx(table["random_minimal"]["scores"][game], abs=0.005)
