"""λ-returns and the actor-critic losses on one imagined trajectory (section 2.2, Eqs. 4–6).

Both sides imagine H = 15 steps from the same posterior states; Reverie's categorical draws
(the actor's action and the prior's latent at every step) are recorded and injected into the
official ``OneHotDist``, so both follow the same trajectory and randomness does not enter.
Reverie runs its real ``ActorCritic.losses``; the official side runs the body of its
``ActorCritic.train`` (imagine, reward, ``target``, ``actor_loss``, ``critic_loss``) without
the optimizer steps. The slow critic is perturbed away from the critic, so that a check
would see either side using the wrong one.

PyPI ``dreamerv2==2.2.0`` differs from the repository's last commit in one line: the last
commit wraps the Reinforce action in ``tf.stop_gradient`` (``agent.py``, ``actor_loss``).
Without it the log-probability could also differentiate through the straight-through
action sample into the logits of the state that sampled it. Reverie follows the last
commit and the checks inject that stop-gradient; one more row runs PyPI's line as released
and finds the same gradient: under TFP 0.23, ``OneHotCategorical.log_prob`` stops the
gradient into its argument itself (``labels=tf.stop_gradient(x)``), so the line changes
nothing on this stack.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import tensorflow as tf
import torch

from reverie.behavior import actor_critic
from reverie.behavior.returns import lambda_return
from tests.parity.official import Draws, Pair, common, gradient_pairs, synthetic_batch

FORWARD = 1e-5
TRAJECTORY = 1e-4  # 15 imagined steps through the GRU after the posterior
GRADIENT = 1e-4


@pytest.mark.parametrize("lambda_", [0.0, 0.95, 1.0])
def test_lambda_return(table, lambda_):
    rng = np.random.default_rng(1)
    reward, value = rng.normal(0, 1, (2, 15, 40)).astype(np.float32)
    discount = (0.999 * (rng.random((15, 40)) > 0.05)).astype(np.float32)
    bootstrap = rng.normal(0, 1, 40).astype(np.float32)
    mine = lambda_return(*(torch.from_numpy(x) for x in (reward, value, discount, bootstrap)), lambda_)
    theirs = common.lambda_return(tf.constant(reward), tf.constant(value), tf.constant(discount),
                                  bootstrap=tf.constant(bootstrap), lambda_=lambda_, axis=0)
    table.check("λ-return", f"λ = {lambda_}, T = 15, with terminals", mine, theirs, FORWARD)


@pytest.fixture(scope="module")
def pair() -> Pair:
    pair = Pair("atari,atari_official")
    behavior = pair.reverie.behavior
    with torch.no_grad():
        for p in behavior.slow_critic.parameters():  # slow critic ≠ critic, so that a mix-up shows
            p.add_(0.05 * torch.randn_like(p))
        # A far from uniform policy: at initialisation the logits are nearly equal, and terms
        # that vanish for a uniform policy (such as the log-probability's gradient through
        # the straight-through action) would not show.
        behavior.actor.mlp.net[-1].weight.mul_(30.0)
    pair.weights.copy_to_official()
    return pair


@pytest.fixture(scope="module")
def start(pair):
    """Posterior states of a replay batch ``[B, L, ...]`` (Reverie's, detached), and is_terminal."""
    batch = synthetic_batch(3, 10, seed=8)
    assert batch["is_terminal"].any(), "the batch must hold a terminal start state"
    with torch.no_grad():
        post = pair.wm.observe(batch).post
    return {k: v.detach() for k, v in post.items()}, batch["is_terminal"]


@contextmanager
def captured():
    """Keep what Reverie's ``losses`` computed: the trajectory, λ-targets and slow values."""
    seen = {}
    original = actor_critic.critic_target

    def critic_target(traj, slow_critic, lambda_):
        target, value = original(traj, slow_critic, lambda_)
        seen.update(traj=traj, target=target, value=value)
        return target, value

    actor_critic.critic_target = critic_target
    try:
        yield seen
    finally:
        actor_critic.critic_target = original


def swap_feat(feat: tf.Tensor, deter: int) -> np.ndarray:
    """Official features ``[stoch | deter]`` in Reverie's order ``[deter | stoch]``."""
    feat = np.asarray(feat)
    return np.concatenate([feat[..., -deter:], feat[..., :-deter]], -1)


def reverie_side(pair, start, is_terminal, rho):
    behavior = pair.reverie.behavior
    saved = behavior.reinforce_mix
    behavior.reinforce_mix = lambda step: rho
    draws = Draws()
    for p in behavior.parameters():
        p.grad = None
    try:
        with draws.record(), captured() as seen:
            loss_a, loss_c, metrics = behavior.losses(pair.wm, start, torch.from_numpy(is_terminal), 0)
    finally:
        behavior.reinforce_mix = saved
    loss_a.backward()
    loss_c.backward()
    return draws, seen, loss_a, loss_c


def official_side(pair, draws, start, is_terminal, actor_grad, stop_action_gradient=True):
    """The body of the official ``ActorCritic.train`` up to the losses."""
    wm, behavior = pair.owm, pair.official._task_behavior
    behavior.config = behavior.config.update({"actor_grad": actor_grad})
    ostart = {("logit" if k == "logits" else k): tf.constant(v.numpy()) for k, v in start.items()}
    out = {}

    def actor_loss():
        with draws.replay():
            seq = wm.imagine(behavior.actor, ostart, tf.constant(is_terminal), behavior.config.imag_horizon)
        seq["reward"], _ = behavior.rewnorm(wm.heads["reward"](seq["feat"]).mode())
        target, _ = behavior.target(seq)
        if stop_action_gradient:  # the repository's last commit (07d906e)
            seq["action"] = tf.stop_gradient(seq["action"])
        loss, _ = behavior.actor_loss(seq, target)
        out.update(seq=seq, target=target, actor_loss=loss)
        return loss

    def critic_loss():
        actor_loss()
        loss, _ = behavior.critic_loss(out["seq"], out["target"])
        out["critic_loss"] = loss
        return loss

    return out, actor_loss, critic_loss


@pytest.mark.parametrize("rho", [1.0, 0.0], ids=["rho1_reinforce", "rho0_dynamics"])
def test_actor_critic_losses_on_one_imagined_trajectory(pair, start, table, rho):
    post, is_terminal = start
    draws, seen, loss_a, loss_c = reverie_side(pair, post, is_terminal, rho)
    actor_grad = "reinforce" if rho == 1.0 else "dynamics"
    out, official_actor, official_critic = official_side(pair, draws, post, is_terminal, actor_grad)
    official_critic()
    seq, deter = out["seq"], pair.wm.rssm.deter
    traj = seen["traj"]
    section = f"imagination, ρ = {rho:g} (official actor_grad={actor_grad}), N = 30 starts, H = 15"
    if rho == 1.0:  # the trajectory is the same for both ρ: record it once
        table.check(section, "features [T, N, F]", traj["feat"], swap_feat(seq["feat"], deter), TRAJECTORY)
        table.check(section, "actions (injected draws)", traj["action"], seq["action"], 0.0)
        table.check(section, "reward (head mean)", traj["reward"], seq["reward"], TRAJECTORY)
        table.check(section, "discount (first: true γ·(1 − terminal))", traj["discount"], seq["discount"], TRAJECTORY)
        table.check(section, "weight = cumprod(discount)", traj["weight"], seq["weight"], TRAJECTORY)
        slow_value = pair.official._task_behavior._target_critic(seq["feat"]).mode()
        table.check(section, "slow-critic value", seen["value"], slow_value, TRAJECTORY)
    table.check(section, "critic target (λ-return, bootstrapped)", seen["target"], out["target"], TRAJECTORY)
    table.check(section, "actor loss", loss_a, out["actor_loss"], TRAJECTORY)
    table.check(section, "critic loss", loss_c, out["critic_loss"], TRAJECTORY)
    for name, loss in (("actor", official_actor), ("critic", official_critic)):
        grads = gradient_pairs(pair, (f"{name}.",), loss)
        assert all(float(g.abs().max()) > 0 for _, g, _ in grads), f"every {name} parameter must get a gradient"
        table.check_all(section, f"∂{name} loss/∂{name} parameters", grads, GRADIENT)
    if rho == 1.0:
        _, pypi_actor, _ = official_side(pair, draws, post, is_terminal, actor_grad, stop_action_gradient=False)
        table.check_all(section, "∂actor loss/∂actor parameters, PyPI 2.2.0 line (no stop_gradient on the action)",
                        gradient_pairs(pair, ("actor.",), pypi_actor), GRADIENT,
                        "same: TFP 0.23's OneHotCategorical.log_prob stops the gradient into its argument itself")
