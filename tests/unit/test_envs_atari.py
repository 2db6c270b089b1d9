"""The Atari protocol of Machado et al. (2018) as the paper uses it (section 3)."""

import numpy as np
import pytest

pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")

from reverie.atari_games import ATARI55  # noqa: E402
from reverie.config import load_config  # noqa: E402
from reverie.envs import make_env  # noqa: E402
from reverie.errors import TaskError  # noqa: E402


def make(task="atari_pong", mode="train", **env):
    overrides = [f"task={task}"] + [f"env.{k}={v}" for k, v in env.items()]
    return make_env(load_config("atari", overrides), mode)


def one_hot(index, n=18):
    return np.eye(n, dtype=np.float32)[index]


def run(env, actions):
    return [env.step(one_hot(a)) for a in actions]


class RecordingALE:
    """Stands between an env and its real ALE: passes every call through, and records per
    frame the action ``act`` received and the reward it returned (or, given ``rewards``,
    returns those scripted rewards instead of the game's)."""

    def __init__(self, ale, rewards=None):
        self.ale, self.actions, self.rewards = ale, [], []
        self.script = None if rewards is None else iter(rewards)

    def act(self, action):
        reward = self.ale.act(action)
        if self.script is not None:
            reward = next(self.script)
        self.actions.append(action.value)
        self.rewards.append(reward)
        return reward

    def __getattr__(self, name):
        return getattr(self.ale, name)


def recorded(env, **kwargs):
    env.ale = RecordingALE(env.ale, **kwargs)
    return env.ale


def test_settings_read_back_from_ale():
    env = make()
    assert env.sticky_actions == 0.25  # applied by the env, frame by frame, not inside the ALE:
    assert env.ale.getFloat("repeat_action_probability") == 0.0  # its state omits the previous action
    assert env.ale.getInt("frame_skip") == 1
    assert len(env.ale.getMinimalActionSet()) == 6  # Pong's minimal set: we must not use it
    assert env.act_space.n == 18 and [a.value for a in env.actions] == list(range(18))
    assert env.action_repeat == 4 and env.time_limit == 108_000 and not env.life_loss
    assert env.obs_space["image"].shape == (64, 64, 1) and env.obs_space["image"].dtype == np.uint8


def test_reset_and_step_format():
    env = make()
    obs = env.reset()
    assert obs["is_first"] and not obs["is_last"] and not obs["is_terminal"] and obs["reward"] == 0.0
    assert obs["image"].shape == (64, 64, 1) and obs["image"].dtype == np.uint8
    step = env.step(3)  # an int index works as well as a one-hot vector
    assert not step["is_first"] and isinstance(step["reward"], float)
    assert env.render().shape == (210, 160, 3)
    with pytest.raises(TaskError, match="one-hot vector of shape"):
        env.step(np.zeros(6))


def test_time_limit_is_truncation_not_terminal():
    env = make(time_limit=40)  # stands in for 108,000 frames
    env.reset()
    obs = run(env, [0] * 10)
    assert [o["is_last"] for o in obs] == [False] * 9 + [True]
    assert not any(o["is_terminal"] for o in obs)
    assert env._frames == 40  # counted in frames = agent steps × action repeat
    with pytest.raises(TaskError, match="call reset"):
        env.step(0)


def test_time_limit_counts_frames_and_cuts_the_last_repeat_short():
    # 42 frames = 10 full steps of 4 frames and 2 frames of the 11th: a limit in agent steps,
    # or one checked only between steps, would stop at another frame.
    env = make(time_limit=42)
    env.reset()
    obs = run(env, [0] * 11)
    assert [o["is_last"] for o in obs] == [False] * 10 + [True]
    assert not any(o["is_terminal"] for o in obs)
    assert env.ale.getEpisodeFrameNumber() == 42  # the ALE's own count of frames played


def test_life_loss_is_terminal_only_when_asked():
    """Same seed, same actions, with and without ``life_loss``: the emulators stay identical,
    the paper's setting plays on through the lost life, the DQN convention ends the episode
    with a terminal exactly there."""
    plain, dqn = make("atari_breakout"), make("atari_breakout", life_loss=True)
    plain.reset(), dqn.reset()
    lives = plain.ale.lives()
    actions = np.random.default_rng(0).integers(18, size=3000)
    for action in actions:
        a, b = plain.step(one_hot(action)), dqn.step(one_hot(action))
        np.testing.assert_array_equal(a["image"], b["image"])
        lost = plain.ale.lives() < lives
        assert b["is_terminal"] == b["is_last"] == lost  # terminal at the lost life, not before
        assert not a["is_last"] and not a["is_terminal"]  # the paper's protocol plays on
        if lost:
            break
    else:
        raise AssertionError("no life lost in 3000 steps")
    assert plain.ale.lives() == lives - 1 and not plain.ale.game_over()
    plain.step(one_hot(0))  # the episode goes on
    with pytest.raises(TaskError, match="call reset"):
        dqn.step(one_hot(0))  # the episode ended
    assert not dqn.reset()["is_terminal"] and dqn.ale.lives() == lives  # a new game


def test_same_seed_same_frames_other_seed_differs():
    actions = np.random.default_rng(0).integers(18, size=150)
    a, b, c = make(), make(), make(mode="eval")
    frames = [[o["image"] for o in [e.reset()] + run(e, actions)] for e in (a, b, c)]
    assert all(np.array_equal(x, y) for x, y in zip(frames[0], frames[1]))
    # Same actions, other seed: only the sticky-action randomness differs, and it shows.
    assert not all(np.array_equal(x, y) for x, y in zip(frames[0], frames[2]))


def test_frames_match_a_hand_rolled_reference():
    """Action repeat 4 summing rewards, max over the last two frames, area resize."""
    env = make(sticky_actions=0.0)
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path("pong"))
    env.reset()
    ale.reset_game()
    for action in np.random.default_rng(1).integers(18, size=60):
        obs = env.step(one_hot(action))
        reward, screens = 0.0, []
        for _ in range(4):
            reward += ale.act(ale_py.Action(int(action)))
            screens.append(ale.getScreenGrayscale())
        expected = cv2.resize(np.maximum(screens[-2], screens[-1]), (64, 64), interpolation=cv2.INTER_AREA)
        assert obs["reward"] == reward
        np.testing.assert_array_equal(obs["image"][:, :, 0], expected)


def test_reward_is_the_sum_over_the_repeated_frames():
    # Scripted per-frame rewards 1, 2, 4, 8: their sum tells which frames were counted.
    env = make(sticky_actions=0.0)
    env.reset()
    recorded(env, rewards=[1.0, 2.0, 4.0, 8.0] * 3)
    assert [o["reward"] for o in run(env, [0, 3, 5])] == [15.0] * 3


def test_reward_is_the_sum_over_the_repeated_frames_of_real_pong():
    """The real twin of the scripted rewards: Pong's points, with a repeat of 3 so that they
    fall on the first, middle and last frame of a repeat (with 4 they all fall on the last)."""
    env = make(sticky_actions=0.0, action_repeat=3)
    env.reset()
    ale = recorded(env)
    rewards = [o["reward"] for o in run(env, [0] * 200)]
    per_frame = np.reshape(ale.rewards, (200, 3))
    assert {frame for frame in range(3) if per_frame[:, frame].any()} == {0, 1, 2}
    assert rewards == per_frame.sum(axis=1).tolist()


def test_sticky_actions_repeat_the_previous_action_per_frame():
    """Probability 1: the action after a reset (NOOP) sticks forever; 0: every action is taken."""
    actions = np.random.default_rng(4).integers(1, 18, size=40)
    always = [o["image"] for o in run(_reset(make(sticky_actions=1.0)), actions)]
    noops = [o["image"] for o in run(_reset(make(sticky_actions=0.0)), np.zeros(40, int))]
    assert all(np.array_equal(a, b) for a, b in zip(always, noops))
    taken = [o["image"] for o in run(_reset(make(sticky_actions=0.0)), actions)]
    assert not all(np.array_equal(a, b) for a, b in zip(taken, noops))


def _reset(env):
    env.reset()
    return env


def test_sticky_actions_draw_once_per_frame_with_their_probability():
    """The actions the ALE receives, frame by frame, while the agent alternates two actions:
    each frame gets the agent's action or, with probability p, the previous frame's."""
    agent = np.tile([2, 3], 250)
    received = {}
    for p in (0.0, 0.25):
        env = _reset(make(sticky_actions=p))
        ale = recorded(env)
        run(env, agent)
        received[p] = np.reshape(ale.actions, (len(agent), 4))
    np.testing.assert_array_equal(received[0.0], np.repeat(agent[:, None], 4, axis=1))  # p = 0: never
    frames = received[0.25].ravel()
    wanted = np.repeat(agent, 4)
    before = np.concatenate([[0], frames[:-1]])  # NOOP is in effect after a reset
    assert np.all((frames == wanted) | (frames == before))
    chances = wanted != before  # frames where the previous action could stick
    assert abs(np.mean(frames[chances] == before[chances]) - 0.25) < 0.05
    # A fresh draw each frame: some steps take the agent's action only after their first frame.
    late = (received[0.25][:, 0] != agent) & (received[0.25][:, -1] == agent)
    assert late.any()


def test_get_state_restores_emulator_and_sticky_rng():
    actions = np.random.default_rng(2).integers(18, size=100)
    env = make()
    env.reset()
    run(env, actions[:50])
    state = env.get_state()
    assert state["ale"].dtype == np.uint8 and isinstance(state["frames"], int)
    expected = run(env, actions[50:])
    fresh = make()
    fresh.set_state(state)
    for got, want in zip(run(fresh, actions[50:]), expected):
        np.testing.assert_array_equal(got["image"], want["image"])
        assert got["reward"] == want["reward"]


def test_rgb_option():
    env = make(grayscale=False, size=[32, 48])
    assert env.reset()["image"].shape == (32, 48, 3)


def test_full_action_set_even_where_ale_lists_fewer():
    env = make("atari_skiing")  # ale-py's getLegalActionSet has 9 actions here
    assert env.act_space.n == 18
    env.reset()
    run(env, range(18))


@pytest.mark.slow
@pytest.mark.parametrize("game", ATARI55)
def test_every_paper_game_constructs_resets_and_steps(game):
    env = make(f"atari_{game}")
    assert env.act_space.n == 18
    obs = env.reset()
    for action in range(18):
        obs = env.step(one_hot(action))
    assert obs["image"].shape == (64, 64, 1)
    env.close()


def test_atari_official_preset_uses_the_official_action_set_and_noop_starts():
    # PyPI dreamerv2 2.2.0, train.py: common.Atari(task, action_repeat, size, grayscale), whose
    # defaults are noops=30 and all_actions=False (gym's AtariPreprocessing does the no-ops).
    env = make_env(load_config("atari,atari_official", ["task=atari_pong"]), "train")
    assert env.noops == 30
    assert env.act_space.n == 6 and env.actions == list(env.ale.getMinimalActionSet())
    assert make().noops == 0  # the paper's protocol: no no-op starts


def test_noop_starts_play_1_to_noops_noop_frames_from_the_seeded_generator():
    # Count the frames a reset plays by comparing the ALE's frame counter with a plain reset.
    counts = []
    env = make(noops=30)
    for _ in range(200):
        env.reset()
        counts.append(env.ale.getEpisodeFrameNumber())
    assert min(counts) >= 1 and max(counts) <= 30 and len(set(counts)) > 20
    plain = make()
    plain.reset()
    assert plain.ale.getEpisodeFrameNumber() == 0
    # Same seed, same no-op counts; the counter of a restored env continues the same stream.
    again = make(noops=30)
    again.reset()
    assert again.ale.getEpisodeFrameNumber() == counts[0]
    state = again.get_state()
    restored = make(noops=30)
    restored.reset()  # advances its own generator: set_state must replace it
    restored.set_state(state)
    restored.reset()
    again.reset()
    assert restored.ale.getEpisodeFrameNumber() == again.ale.getEpisodeFrameNumber()


def test_noop_starts_are_noop_frames_uniform_over_1_to_noops():
    """The actions the ALE receives during reset: ``noops=5`` plays 1..5 NOOP frames, each
    count about equally often; ``noops=0`` plays none."""
    env = make(noops=5)
    ale = recorded(env)
    counts = []
    for _ in range(100):
        before = len(ale.actions)
        env.reset()
        counts.append(len(ale.actions) - before)
    assert set(ale.actions) == {0}  # NOOP only
    histogram = np.bincount(counts, minlength=6)
    assert histogram[0] == 0 and len(histogram) == 6  # from 1 to 5, both ends included
    assert histogram[1:].min() >= 10  # 20 expected each: uniform, not a fixed count
    plain = make()
    ale = recorded(plain)
    for _ in range(3):
        plain.reset()
    assert ale.actions == []
