"""Acting: ``Agent.policy(obs, state, mode)`` step by step against the official ``Agent.policy``.

Both agents carry the state each call returns into the next call, as a driver does: 2
environments for 8 steps from ``state=None``, and env 1 starts a new episode at step 4
(``is_first``, after ``is_last`` at step 3), where the latent and the previous action must be
reset to the initial state. Cases: discrete actions (``atari,atari_official`` against the
official ``atari``: 64×64×1 frames, 18 actions, one-hot actor) and continuous ones (``dmc``
against ``dmc_vision``: 64×64×3 frames, 6 actions, truncated-normal actor), each in mode
``train`` (the actor's sample) and ``eval`` (the actor's mode), without and with action noise
(ε = 0.3 in ``train``, 0.2 in ``eval``: different, so that a mix-up of the two shows).

Every random draw of Reverie's step is injected into the official step, which therefore acts on
the same draws; where a sampler cannot be fed the same uniforms, the distribution fed to it is
compared instead:

- the posterior latent and the discrete actor: Reverie's one-hot draws (``Draws``); the official
  ``obs_step`` also samples the prior, which the policy does not use: it gets the posterior's draw;
- the discrete noise: Reverie's ``torch.multinomial`` draw as the official ``OneHotDist(probs)``
  one-hot, and the two ``probs = ε/A + (1 − ε)·action`` are compared;
- the continuous actor: TF's truncated-normal sampler (``stateless_parameterized_truncated_normal``)
  takes no uniforms, so Reverie's sample is injected and the distributions' ``loc``/``scale`` are
  compared;
- the continuous noise: Reverie's ``torch.randn_like`` draw ε₀ as the official ``Normal(action,
  ε)`` sample, formed as TFP forms it (``ε₀·scale + loc``).

Before each official step the test checks that Reverie drew exactly what the official policy
draws in that mode: the posterior latent in both modes (the official ``eval_state_mean: False``
samples the latent in ``eval`` too; Reverie has no such option and always samples it), the actor
only in ``train``, the noise only where ε > 0.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import gymnasium
import numpy as np
import pytest
import tensorflow as tf
import torch
from tensorflow_probability import distributions as tfd

from reverie.nn import distributions
from tests.parity.official import Draws, Pair, common

STEPS, ENVS, RESET = 8, 2, 4  # env 1 starts a new episode at step RESET
FORWARD = 1e-5  # one acting step: encoder, GRU, posterior, actor
STATE = 1e-5  # the latent carried over 8 steps
NOISE = {"no noise": (0.0, 0.0), "noise": (0.3, 0.2)}  # (expl_noise for train, eval_noise for eval)
KINDS = {
    "discrete": dict(presets="atari,atari_official", official_preset="atari", image_shape=(64, 64, 1),
                     act_space=gymnasium.spaces.Discrete(18)),
    "continuous": dict(presets="dmc", official_preset="dmc_vision", image_shape=(64, 64, 3),
                       act_space=gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32)),
}

_PAIRS: dict[tuple[str, str], Pair] = {}


def pair_for(kind: str, noise: str) -> Pair:
    """Both agents for ``kind`` with the noise setting ``noise`` (built once per module run)."""
    if (kind, noise) not in _PAIRS:
        expl, evaluation = NOISE[noise]
        _PAIRS[kind, noise] = Pair(
            overrides=(f"behavior.expl_noise={expl}", f"behavior.eval_noise={evaluation}"),
            official_updates={"expl_noise": expl, "eval_noise": evaluation}, **KINDS[kind])
    return _PAIRS[kind, noise]


def observations(channels: int, seed: int = 3) -> list[dict[str, np.ndarray]]:
    """Per step, the observations of ``ENVS`` environments ``[N, ...]`` as the driver passes
    them: random frames, zero rewards, ``is_first`` for both at step 0 and for env 1 at ``RESET``
    (``is_last`` before it). (The real Driver feeds ``Agent.policy`` from a real env in
    ``integration/test_train_data_path.py``.)"""
    rng = np.random.default_rng(seed)
    steps = []
    for t in range(STEPS):
        is_first = np.array([t == 0, t in (0, RESET)])
        steps.append({
            "image": rng.integers(0, 256, (ENVS, 64, 64, channels), dtype=np.uint8),
            "reward": np.zeros(ENVS, np.float32),
            "is_first": is_first,
            "is_last": np.array([False, t == RESET - 1]),
            "is_terminal": np.zeros(ENVS, bool),
        })
    return steps


@contextmanager
def patched(owner, name: str, value):
    """``owner.name = value`` for the block; restored (or removed, if it was inherited) after."""
    had, saved = name in vars(owner), vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, saved)
        else:
            delattr(owner, name)


class StepDraws:
    """Every draw of one Reverie policy step, recorded by kind, and replayed to the official step.

    ``kinds``: the draws in call order (``latent``, ``actor``, ``noise``); ``onehot``: the
    one-hot draws (latent, discrete actor, discrete noise) with ``probs``, the probabilities each
    was drawn from; ``trunc``: the continuous actor's (loc, scale, sample); ``eps``: the
    continuous noise's standard-normal draws.
    """

    def __init__(self):
        self.kinds: list[str] = []
        self.onehot = Draws()
        self.probs: list[torch.Tensor] = []
        self.trunc: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.eps: list[torch.Tensor] = []

    @contextmanager
    def record(self):
        with ExitStack() as stack:
            stack.enter_context(self.onehot.record())
            onehot_sample = distributions.OneHotDist.sample  # Draws' recording sample
            trunc_sample = distributions.TruncNormalDist.sample
            multinomial, randn_like = torch.multinomial, torch.randn_like

            def sample(dist):  # the RSSM's latents are [N, stoch, classes], the actor's [N, A]
                self.kinds.append("latent" if dist.probs.dim() == 3 else "actor")
                self.probs.append(dist.probs.detach().clone())
                return onehot_sample(dist)

            def sample_trunc(dist):
                value = trunc_sample(dist)
                self.kinds.append("actor")
                self.trunc.append((dist.mean.detach().clone(), dist.std.detach().clone(), value.detach().clone()))
                return value

            def noise_index(probs, num_samples, *args, **kwargs):
                index = multinomial(probs, num_samples, *args, **kwargs)
                self.kinds.append("noise")
                self.probs.append(probs.detach().clone())
                self.onehot.recorded.append(torch.nn.functional.one_hot(index.squeeze(-1), probs.shape[-1]).float())
                return index

            def noise_eps(x, *args, **kwargs):
                eps = randn_like(x, *args, **kwargs)
                self.kinds.append("noise")
                self.eps.append(eps.clone())
                return eps

            stack.enter_context(patched(distributions.OneHotDist, "sample", sample))
            stack.enter_context(patched(distributions.TruncNormalDist, "sample", sample_trunc))
            stack.enter_context(patched(torch, "multinomial", noise_index))
            stack.enter_context(patched(torch, "randn_like", noise_eps))
            yield self

    @contextmanager
    def replay(self):
        """The official step on these draws. Yields what its samplers were given: ``probs`` of
        every one-hot draw (the prior's first), ``trunc`` (loc, scale) of the actor's."""
        seen = {"probs": [], "trunc": []}
        trunc, eps = list(self.trunc), list(self.eps)
        with ExitStack() as stack:
            # The official obs_step samples the prior (unused by the policy), then the posterior.
            stack.enter_context(self.onehot.replay([0, *range(len(self.onehot.recorded))]))
            onehot_sample_n = common.OneHotDist._sample_n

            def sample_n(dist, n, seed=None):
                seen["probs"].append(dist.probs_parameter())
                return onehot_sample_n(dist, n, seed)

            def trunc_sample_n(dist, n, seed=None):
                seen["trunc"].append((dist.loc, dist.scale))
                return tf.constant(trunc.pop(0)[2].numpy()[None])

            def normal_sample_n(dist, n, seed=None):
                return tf.constant(eps.pop(0).numpy()[None]) * dist.scale + dist.loc  # as TFP's Normal._sample_n

            stack.enter_context(patched(common.OneHotDist, "_sample_n", sample_n))
            stack.enter_context(patched(common.TruncNormalDist, "_sample_n", trunc_sample_n))
            stack.enter_context(patched(tfd.Normal, "_sample_n", normal_sample_n))
            yield seen
        assert not trunc and not eps, "the official policy took fewer continuous draws than Reverie made"


def expected_kinds(mode: str, amount: float) -> list[str]:
    """The draws of one official policy step (``agent.py``, ``policy``; ``common.action_noise``)."""
    return ["latent"] + (["actor"] if mode == "train" else []) + (["noise"] if amount > 0 else [])


def act(pair: Pair, kind: str, mode: str, amount: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both policies over the observations, each carrying its own state. Returns, per quantity,
    the (Reverie, official) values of every step, stacked ``[T, ...]``."""
    torch.manual_seed(0)  # the same draws whichever cases ran before
    rows: dict[str, list[tuple]] = {}

    def add(quantity, mine, theirs):
        rows.setdefault(quantity, []).append((np.asarray(mine), np.asarray(theirs)))

    state = ostate = None
    for t, obs in enumerate(observations(KINDS[kind]["image_shape"][-1])):
        draws = StepDraws()
        with draws.record():
            action, state = pair.reverie.policy(obs, state, mode)
        expected = expected_kinds(mode, amount)
        assert draws.kinds == expected, (
            f"step {t}: Reverie's policy drew {draws.kinds}; the official policy in mode {mode!r} with "
            f"noise {amount} draws {expected}")
        with draws.replay() as seen:
            outputs, ostate = pair.official.policy({k: tf.constant(v) for k, v in obs.items()}, ostate, mode)
        latent, olatent = state[0], ostate[0]
        add("action", action, outputs["action"])
        add("deter", latent["deter"], olatent["deter"])
        add("logits", latent["logits"], olatent["logit"])
        add("stoch", latent["stoch"], olatent["stoch"])
        # The official one-hot calls: the prior, then one per Reverie one-hot draw, in order.
        onehot_kinds = [k for k in draws.kinds if k == "latent" or kind == "discrete"]
        for which, mine, theirs in zip(onehot_kinds, draws.probs, seen["probs"][1:], strict=True):
            if which != "latent":
                add(f"{which} probs", mine, theirs)
        for (loc, scale, _), (oloc, oscale) in zip(draws.trunc, seen["trunc"], strict=True):
            add("actor loc", loc, oloc)
            add("actor scale", scale, oscale)
    return {q: (np.stack([m for m, _ in v]), np.stack([o for _, o in v])) for q, v in rows.items()}


@pytest.mark.parametrize("noise", list(NOISE))
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_policy_acts_as_the_official_policy(table, kind, mode, noise):
    pair = pair_for(kind, noise)
    assert not pair.official_config.eval_state_mean  # the official default: the latent is sampled in eval too
    amount = NOISE[noise][mode == "eval"]
    rows = act(pair, kind, mode, amount)
    settings = KINDS[kind]
    section = (f"policy, {kind} ({settings['presets']} vs official {settings['official_preset']}), mode {mode}, "
               f"{f'ε = {amount}' if amount else 'no noise'}, N = {ENVS} × T = {STEPS} steps, env 1 reset at step {RESET}")
    discrete = kind == "discrete"
    what = ("the actor's sample (draw injected)" if mode == "train" else "the actor's mode") + (
        ", then the noise (draw injected)" if amount else "")
    table.check(section, f"actions [T, N, A]: {what}", *rows["action"], 0.0 if discrete else FORWARD)
    note = "posterior latent sampled in both modes (official eval_state_mean: False)" if mode == "eval" else ""
    table.check_all(section, "latent carried between calls (deter, logits, stoch)",
                    [(q, *rows[q]) for q in ("deter", "logits", "stoch")], STATE, note)
    if mode == "train" and discrete:
        table.check(section, "actor probabilities fed to the sampler", *rows["actor probs"], FORWARD)
    if mode == "train" and not discrete:
        table.check_all(section, "actor truncated normal fed to the sampler (loc, scale)",
                        [(q, *rows[q]) for q in ("actor loc", "actor scale")], FORWARD)
    if amount and discrete:
        table.check(section, "noise probabilities ε/A + (1 − ε)·action fed to the sampler", *rows["noise probs"],
                    FORWARD)
