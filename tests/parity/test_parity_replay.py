"""The replay's sequence semantics against the official ``common/replay.py``
(``minlen = maxlen = length = 50``, the official defaults, ``prioritize_ends`` on as in its
``atari`` config): the episode and start-index distribution, the content of a sequence, and
``is_first`` on its first step.

Both samplers are functions of their random draws. The exact distribution of each is
computed by feeding it every possible draw once (a scripted RNG in place of theirs), so
distributions are compared exactly, not through sampling noise; a second check samples with
the real RNGs and compares the empirical start frequencies near the episode ends.

Reverie's ``atari`` preset draws the start in ``[0, len)`` (paper), the official code in
``[0, len]`` (``upper = len − L + 1 + L``), both clipped to ``len − L``; ``atari_official``
sets ``replay.prioritize_ends`` to the official rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from reverie.config import load_config
from reverie.replay.episodes import Replay
from tests.parity.official import common, numpy_bool, official_config

LENGTH = 50
EPISODES = [51, 60, 75, 120]  # steps per episode (the official replay keeps only len − 1 ≥ minlen)


def episodes():
    """Episodes whose ``reward`` is the step's global index, so a sequence names its start."""
    out, index = [], 0
    rng = np.random.default_rng(0)
    for steps in EPISODES:
        ep = {
            "image": rng.integers(0, 256, (steps, 64, 64, 1), dtype=np.uint8),
            "action": np.eye(18, dtype=np.float32)[rng.integers(18, size=steps)],
            "reward": np.arange(index, index + steps, dtype=np.float32),
            "is_first": np.arange(steps) == 0,
            "is_last": np.arange(steps) == steps - 1,
            "is_terminal": np.arange(steps) == steps - 1,
        }
        ep["action"][0] = 0
        out.append(ep)
        index += steps
    return out


@pytest.fixture(scope="module")
def replays(tmp_path_factory):
    eps = episodes()
    mine = Replay(tmp_path_factory.mktemp("reverie"), capacity=10**6, seed=0)
    for ep in eps:
        for t in range(len(ep["reward"])):
            mine.add({k: v[t] for k, v in ep.items()})
    theirs = common.Replay(tmp_path_factory.mktemp("official"), capacity=0, ongoing=False, minlen=LENGTH,
                           maxlen=LENGTH, prioritize_ends=True)
    for ep in eps:
        theirs.add_episode({k: list(v) for k, v in ep.items()})
    return mine, theirs, eps


class ScriptedGenerator:
    """numpy ``Generator.integers`` returning the scripted values (Reverie's replay RNG)."""

    def __init__(self, values):
        self.values, self.bounds = list(values), []

    def integers(self, n):
        self.bounds.append(int(n))
        value = self.values.pop(0)
        assert 0 <= value < n
        return value


class ScriptedRandomState:
    """numpy ``RandomState.choice``/``randint`` returning the scripted values (the official replay)."""

    def __init__(self, episode, value):
        self.episode, self.value, self.bound = episode, value, None

    def choice(self, items):
        return items[self.episode]

    def randint(self, n):
        self.bound = int(n)
        assert 0 <= self.value < n
        return self.value


def reverie_distribution(replay, prioritize_ends):
    """Exact P(episode, start) of ``Replay.sample`` over every draw; and one sequence per start."""
    probs, sequences = {}, {}
    saved = replay._sampler.rng
    try:
        for e in range(len(EPISODES)):
            replay._sampler.rng = probe = ScriptedGenerator([e, 0])
            replay.sample(1, LENGTH, prioritize_ends)
            n = probe.bounds[1]
            for r in range(n):
                replay._sampler.rng = ScriptedGenerator([e, r])
                seq = replay.sample(1, LENGTH, prioritize_ends)
                key = (e, int(seq["reward"][0, 0]))
                probs[key] = probs.get(key, 0.0) + 1.0 / (len(EPISODES) * n)
                sequences[key] = {k: v[0] for k, v in seq.items()}
    finally:
        replay._sampler.rng = saved
    return probs, sequences


def official_distribution(replay):
    probs, sequences = {}, {}
    saved = replay._random
    try:
        for e in range(len(EPISODES)):
            replay._random = probe = ScriptedRandomState(e, 0)
            with numpy_bool():
                replay._sample_sequence()
            n = probe.bound
            for r in range(n):
                replay._random = ScriptedRandomState(e, r)
                with numpy_bool():
                    seq = replay._sample_sequence()
                key = (e, int(seq["reward"][0]))
                probs[key] = probs.get(key, 0.0) + 1.0 / (len(EPISODES) * n)
                sequences[key] = seq
    finally:
        replay._random = saved
    return probs, sequences


def as_vector(probs, keys):
    return np.array([probs.get(k, 0.0) for k in keys])


def test_sequence_distribution_and_content(replays, table):
    mine, theirs, _ = replays
    assert load_config("atari").replay.prioritize_ends is False
    assert load_config("atari,atari_official").replay.prioritize_ends is True
    official_probs, official_seqs = official_distribution(theirs)
    section = f"replay, L = {LENGTH}, episodes of {', '.join(map(str, EPISODES))} steps"
    for preset in ("atari", "atari,atari_official"):
        prioritize = load_config(preset).replay.prioritize_ends
        probs, seqs = reverie_distribution(mine, prioritize)
        keys = sorted(set(probs) | set(official_probs))
        quantity = f"P(episode, start), exact, preset {preset}"
        if prioritize:
            table.check(section, quantity, as_vector(probs, keys), as_vector(official_probs, keys), 1e-12)
        else:
            table.differs(section, quantity, as_vector(probs, keys), as_vector(official_probs, keys), 1e-6,
                          "paper: start uniform in [0, len) clipped; official and atari_official: [0, len]")
    # Same (episode, start): the same steps, the first one marked is_first.
    assert set(seqs) == set(official_seqs)
    for key in ("image", "action", "reward", "is_terminal", "is_first"):
        mine_all = np.stack([seqs[k][key] for k in sorted(seqs)]).astype(np.float64)
        theirs_all = np.stack([official_seqs[k][key] for k in sorted(seqs)]).astype(np.float64)
        table.check(section, f"sequence content: {key}", mine_all, theirs_all, 0.0)
    assert all(s["is_first"][0] and not s["is_first"][1:].any() for s in seqs.values())


def test_start_frequencies_near_episode_ends_with_the_real_rngs(replays, table):
    """The real RNGs: empirical P(start = len − L − k), k = 0..4, per episode length, from
    20,000 sequences on each side (official ``_sample_sequence``, Reverie ``sample`` with
    ``atari_official``'s ``prioritize_ends``); tolerance 5 standard errors of the difference."""
    mine, theirs, eps = replays
    n = 20_000
    theirs._random = np.random.RandomState(1)
    np.random.seed(1)
    with numpy_bool():
        official_starts = [int(theirs._sample_sequence()["reward"][0]) for _ in range(n)]
    mine_starts = mine.sample(n, LENGTH, prioritize_ends=True)["reward"][:, 0].astype(int)
    offsets = np.cumsum([0] + EPISODES[:-1])
    keys = [int(o + s - LENGTH - k) for o, s in zip(offsets, EPISODES) for k in range(5) if s - LENGTH - k >= 0]
    freq = lambda starts: np.array([np.mean(np.asarray(starts) == k) for k in keys])  # noqa: E731
    a, b = freq(mine_starts), freq(official_starts)
    stderr = np.sqrt(2 * np.maximum(a, b) * (1 - np.maximum(a, b)) / n).max()
    tolerance = float(5 * stderr / np.abs(b).max())
    table.check("replay, real RNGs, 20,000 sequences each",
                f"P(start = len − L − k), k = 0..4, {len(keys)} indices (5σ)", a, b, tolerance)


# ---------------------------------------------------------------- the other official rules
RUNNING = 70  # steps of an episode still running when sampling (official: an ongoing episode)
SHORT = LENGTH  # rows of a finished episode of L − 1 agent steps, shorter than minlen = L (official: not stored)


def rule_replays(tmp_path_factory, ongoing: bool, prioritize_ends: bool):
    """Both replays holding ``EPISODES``, a finished episode of ``SHORT`` steps after the first
    one, and a running episode of ``RUNNING`` steps; rewards are global step indices as above."""
    eps = episodes()
    short = {k: v[:SHORT].copy() for k, v in eps[1].items()}
    short["is_last"][-1] = short["is_terminal"][-1] = True
    short["reward"] += 1000
    running = {k: v[:RUNNING].copy() for k, v in eps[3].items()}
    running["reward"] += 2000
    finished = [eps[0], short, *eps[1:]]
    mine = Replay(tmp_path_factory.mktemp("reverie"), capacity=10**6, seed=0)
    theirs = common.Replay(tmp_path_factory.mktemp("official"), capacity=0, ongoing=ongoing, minlen=LENGTH,
                           maxlen=LENGTH, prioritize_ends=prioritize_ends)
    for ep in finished:
        theirs.add_episode({k: list(v) for k, v in ep.items()})
    for ep in [*finished, running]:
        for t in range(len(ep["reward"])):
            step = {k: v[t] for k, v in ep.items()}
            mine.add(step)
            if ep is running:
                theirs.add_step(step)
    return mine, theirs


def exact_distribution(sample, episodes_n: int) -> dict:
    """``P(first reward of the sequence)`` over every (episode, start) draw pair: ``sample(e, r)``
    returns the sequence's first reward and the bound of the start draw."""
    probs = {}
    for e in range(episodes_n):
        n = sample(e, 0)[1]
        for r in range(n):
            first = sample(e, r)[0]
            probs[first] = probs.get(first, 0.0) + 1.0 / (episodes_n * n)
    return probs


def reverie_rule_distribution(replay, **rule):
    def sample(e, r):
        replay._sampler.rng = probe = ScriptedGenerator([e, r])
        seq = replay.sample(1, LENGTH, rule["prioritize_ends"], clip_start=rule["clip_start"],
                            ongoing=rule["ongoing"], minlen=rule["minlen"])
        return int(seq["reward"][0, 0]), probe.bounds[1]

    count = len(replay.sampleable(rule["ongoing"], rule["minlen"]))
    return exact_distribution(sample, count)


def official_rule_distribution(replay):
    count = len(replay._complete_eps) + (sum(len(x["action"]) - 1 >= LENGTH for x in replay._ongoing_eps.values())
                                         if replay._ongoing else 0)

    def sample(e, r):
        replay._random = probe = ScriptedRandomState(e, r)
        with numpy_bool():
            seq = replay._sample_sequence()
        return int(seq["reward"][0]), probe.bound

    return exact_distribution(sample, count)


@pytest.mark.parametrize("ongoing", [False, True])
@pytest.mark.parametrize("prioritize_ends", [False, True])
def test_ongoing_minlen_and_start_rules(tmp_path_factory, table, ongoing, prioritize_ends):
    """``replay.ongoing``, ``replay.minlen`` and the start rule against the official replay, exact:
    with ``clip_start: false`` (the ``dmc`` preset) ``prioritize_ends: false`` draws over the
    ``len − L + 1`` starts that fit; the running episode is drawn only with ``ongoing``; the
    episode shorter than ``minlen`` never."""
    mine, theirs = rule_replays(tmp_path_factory, ongoing, prioritize_ends)
    official = official_rule_distribution(theirs)
    probs = reverie_rule_distribution(mine, prioritize_ends=prioritize_ends, clip_start=False, ongoing=ongoing,
                                      minlen=LENGTH)
    keys = sorted(set(probs) | set(official))
    assert not any(1000 <= k < 2000 for k in keys)  # the short episode: never a start
    assert any(k >= 2000 for k in keys) == ongoing  # the running episode: only with ongoing
    section = f"replay rules, L = minlen = {LENGTH}, a running episode of {RUNNING} and a finished one of {SHORT}"
    quantity = f"P(start), exact, ongoing={ongoing}, prioritize_ends={prioritize_ends}, clip_start=false"
    table.check(section, quantity, as_vector(probs, keys), as_vector(official, keys), 1e-12)


def test_the_dmc_preset_draws_starts_as_the_official_dmc_config(tmp_path_factory, table):
    """The ``dmc`` preset's replay fields are the official ``dmc_vision`` config's replay."""
    config = load_config("dmc")
    assert (config.replay.prioritize_ends, config.replay.clip_start, config.replay.ongoing,
            config.replay.minlen) == (False, False, False, config.replay.length)
    official = official_config("dmc_vision")
    assert (official.replay.prioritize_ends, official.replay.ongoing, official.replay.minlen) == (False, False, 50)
