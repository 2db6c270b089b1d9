"""Networks one at a time, at the atari preset's sizes, with shared weights: encoder, decoder,
each head's log-probability, the GRU cell, and the RSSM's ``img_step`` / ``obs_step``.

Inputs are the same numbers on both sides (features in each side's layout); each check
compares the outputs and the gradients of a scalar of them on every parameter involved.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.parity.official import (
    Draws,
    Pair,
    feat_pair,
    gradient_pairs,
    random_state,
    synthetic_batch,
    to_official_state,
    to_reverie_state,
    zero_grads,
)

# float32 on both sides; the differences come from the order of summation inside matmuls
# and convolutions (oneDNN vs Eigen), ~1e-7 relative per op.
FORWARD = 1e-5  # outputs of a network
GRADIENT = 1e-4  # gradients: a backward pass doubles the chain and sums over the batch


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair("atari")


@pytest.fixture(scope="module")
def batch():
    return synthetic_batch(2, 10, seed=3)


@pytest.mark.parametrize("steps,path", [(1, "im2col patches"), (10, "channels-last convolutions")],
                         ids=["2_images_patches", "20_images_conv"])
def test_encoder(pair, batch, table, steps, path):
    """Both code paths of Reverie's encoder: im2col patches (≤ 8 images, acting) and oneDNN
    channels-last convolutions (training batches)."""
    image = batch["image"][:, :steps]
    n = image.shape[0] * image.shape[1]
    wm, owm = pair.wm, pair.owm
    weight = np.random.default_rng(0).normal(size=(*image.shape[:2], wm.encoder.out_dim)).astype(np.float32)
    zero_grads(wm)
    embed = wm.encoder({"image": torch.from_numpy(image)})
    (embed * torch.from_numpy(weight)).sum().backward()

    def official():
        return owm.encoder({"image": tf.cast(image, tf.float32) / 255.0 - 0.5})

    table.check("encoder", f"embedding, {n} images ({path})", embed, official(), FORWARD)
    grads = gradient_pairs(pair, ("encoder.",), lambda: tf.reduce_sum(official() * weight))
    table.check_all("encoder", f"gradient of Σ w·embed, {n} images ({path})", grads, GRADIENT)


def _features(rng, shape):
    state = random_state(rng, int(np.prod(shape)))
    deter = state["deter"].reshape(*shape, -1)
    stoch = state["stoch"].reshape(*shape, 32, 32)
    return feat_pair(deter, stoch)


def test_decoder(pair, batch, table):
    """Mean image and the image log-likelihood ``log N(x; mean, 1)`` summed over pixels."""
    rng = np.random.default_rng(1)
    feat, ofeat = _features(rng, batch["image"].shape[:2])
    wm, owm = pair.wm, pair.owm
    target = batch["image"]
    zero_grads(wm)
    dist = wm.heads["decoder"](feat)["image"]
    like = dist.log_prob(torch.from_numpy(target).permute(0, 1, 4, 2, 3).float() / 255 - 0.5)
    like.sum().backward()

    def official():
        return owm.heads["decoder"](ofeat)["image"]

    odist = official()
    table.check("decoder", "mean image [B, T, 64, 64, 1]", dist.mean.permute(0, 1, 3, 4, 2), odist.mean(), FORWARD)
    otarget = tf.cast(target, tf.float32) / 255 - 0.5
    table.check("decoder", "image log-likelihood per step", like, odist.log_prob(otarget), FORWARD)
    grads = gradient_pairs(pair, ("decoder.",), lambda: tf.reduce_sum(official().log_prob(otarget)))
    table.check_all("decoder", "gradient of Σ log-likelihood", grads, GRADIENT)


def test_reward_and_discount_heads(pair, batch, table):
    """Reward: ``log N(tanh(r); mean, 1)``; discount: Bernoulli log-likelihood of the soft
    target γ·(1 − is_terminal) (the official code's `binary` head on `discount`)."""
    rng = np.random.default_rng(2)
    shape = batch["reward"].shape
    feat, ofeat = _features(rng, shape)
    wm, owm = pair.wm, pair.owm
    gamma = pair.config.behavior.discount
    targets = {"reward": np.tanh(batch["reward"]),
               "discount": (gamma * (1 - batch["is_terminal"])).astype(np.float32)}
    targets["discount"][0, :3] = [0.0, 1.0, 0.3]  # soft targets too
    for name, target in targets.items():
        otarget = tf.constant(target)  # a tensor: TFP casts a numpy value to the Bernoulli's int32
        zero_grads(wm)
        dist = wm.heads[name](feat)
        like = dist.log_prob(torch.from_numpy(target))
        like.sum().backward()
        olike = owm.heads[name](ofeat).log_prob(otarget)
        table.check(f"{name} head", "log-likelihood", like, olike, FORWARD)
        grads = gradient_pairs(pair, (f"heads.{name}.",), lambda: tf.reduce_sum(owm.heads[name](ofeat).log_prob(otarget)))  # noqa: B023
        table.check_all(f"{name} head", "gradient of Σ log-likelihood", grads, GRADIENT)


def test_actor_and_critic_heads(pair, table):
    """Actor: one-hot categorical log-probability of an action and entropy; critic and slow
    critic: ``log N(target; v, 1)``."""
    rng = np.random.default_rng(3)
    feat, ofeat = _features(rng, (64,))
    behavior, obeh = pair.reverie.behavior, pair.official._task_behavior
    action = np.eye(18, dtype=np.float32)[rng.integers(18, size=64)]
    zero_grads(behavior)
    dist = behavior.actor(feat)
    logp, ent = dist.log_prob(torch.from_numpy(action)), dist.entropy()
    (logp + 0.1 * ent).sum().backward()
    odist = obeh.actor(ofeat)
    action = tf.constant(action)
    table.check("actor", "log π(a | z)", logp, odist.log_prob(action), FORWARD)
    table.check("actor", "entropy H[π]", ent, odist.entropy(), FORWARD)
    grads = gradient_pairs(pair, ("actor.",), lambda: tf.reduce_sum(
        obeh.actor(ofeat).log_prob(action) + 0.1 * obeh.actor(ofeat).entropy()))
    table.check_all("actor", "gradient of Σ (log π + 0.1·H)", grads, GRADIENT)
    target = rng.normal(0, 3, 64).astype(np.float32)
    otarget = tf.constant(target)
    for name, net, onet in (("critic", behavior.critic, obeh.critic),
                            ("slow_critic", behavior.slow_critic, obeh._target_critic)):
        table.check(name, "value v(z)", net(feat).mean, onet(ofeat).mode(), FORWARD)
    zero_grads(behavior)
    behavior.critic(feat).log_prob(torch.from_numpy(target)).sum().backward()
    grads = gradient_pairs(pair, ("critic.",), lambda: tf.reduce_sum(obeh.critic(ofeat).log_prob(otarget)))
    table.check_all("critic", "gradient of Σ log N(target; v, 1)", grads, GRADIENT)


def test_gru_cell(pair, table):
    """The LayerNorm GRU: one Dense over [input, h] → reset, candidate, update (bias −1)."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (32, 600)).astype(np.float32)
    h = np.tanh(rng.normal(0, 1, (32, 600))).astype(np.float32)
    rssm, orssm = pair.wm.rssm, pair.owm.rssm
    weight = rng.normal(size=(32, 600)).astype(np.float32)
    zero_grads(pair.wm)
    out = rssm.gru(torch.from_numpy(x), torch.from_numpy(h))
    (out * torch.from_numpy(weight)).sum().backward()
    oout, _ = orssm._cell(tf.constant(x), [tf.constant(h)])
    table.check("GRU cell", "h' = GRU(x, h)", out, oout, FORWARD)
    grads = gradient_pairs(pair, ("rssm.gru.",), lambda: tf.reduce_sum(orssm._cell(tf.constant(x), [tf.constant(h)])[0] * weight))
    table.check_all("GRU cell", "gradient of Σ w·h'", grads, GRADIENT)


def _state_rows(table, section, state, ostate, keys=("deter", "logits", "stoch")):
    for key in keys:
        okey = "logit" if key == "logits" else key
        table.check(section, key, state[key], ostate[okey], FORWARD)


def test_img_step(pair, table):
    """Prior step h_t = GRU(h, MLP(z, a)), p(z_t | h_t) logits, and its mode z_t."""
    rng = np.random.default_rng(5)
    state = random_state(rng, 16)
    action = np.eye(18, dtype=np.float32)[rng.integers(18, size=16)]
    with torch.no_grad():
        prior = pair.wm.rssm.img_step(to_reverie_state(state), torch.from_numpy(action), draw="mode")
    oprior = pair.owm.rssm.img_step(to_official_state(state), tf.constant(action), sample=False)
    _state_rows(table, "img_step", prior, oprior)


def _one_step(post, prior):
    return ({k: v[:, 0] for k, v in post.items()}, {k: v[:, 0] for k, v in prior.items()})


def test_obs_step(pair, table):
    """Posterior step with ``is_first`` on some rows (their previous state and action are
    zeroed first), its mode and, sampled, the posterior sample with the same draw injected
    (the official code also samples the prior, which nothing reads). Reverie's step is one
    step of ``observe`` (length-1 sequences)."""
    rng = np.random.default_rng(6)
    state = random_state(rng, 16)
    action = np.eye(18, dtype=np.float32)[rng.integers(18, size=16)]
    embed = rng.normal(0, 1, (16, pair.wm.encoder.out_dim)).astype(np.float32)
    is_first = np.arange(16) % 3 == 0
    rssm, orssm = pair.wm.rssm, pair.owm.rssm
    args = (torch.from_numpy(embed)[:, None], torch.from_numpy(action)[:, None], torch.from_numpy(is_first)[:, None])
    oargs = (tf.constant(action), tf.constant(embed), tf.constant(is_first))
    with torch.no_grad():
        post, prior = _one_step(*rssm.observe(*args, to_reverie_state(state), draw="mode"))
    opost, oprior = orssm.obs_step(to_official_state(state), *oargs, sample=False)
    _state_rows(table, "obs_step (mode)", post, opost)
    table.check("obs_step (mode)", "prior logits", prior["logits"], oprior["logit"], FORWARD)
    table.check("obs_step (mode)", "prior deter", prior["deter"], oprior["deter"], FORWARD)
    draws = Draws()
    with torch.no_grad(), draws.record():
        post, _ = _one_step(*rssm.observe(*args, to_reverie_state(state), draw="sample"))
    assert len(draws.recorded) == 1
    with draws.replay(order=[0, 0]):
        opost, _ = orssm.obs_step(to_official_state(state), *oargs, sample=True)
    _state_rows(table, "obs_step (sampled)", post, opost, keys=("stoch",))


def test_continuous_actor_truncated_normal(table):
    """The continuous actor (DMC presets; not part of atari): 4×400 MLP → truncated normal on
    [−1, 1] with mean tanh(x) and std 2·sigmoid(y/2) + 0.1, against the official ``MLP`` with
    ``dist: trunc_normal`` (its two output layers ``out``/``std`` are the two halves of
    Reverie's output layer). Log-probability, entropy and mode, and their gradients."""
    from gymnasium import spaces

    from reverie.behavior.actor_critic import Actor
    from reverie.config import load_config
    from tests.parity.official import common

    torch.manual_seed(0)
    actions = 6
    actor = Actor(1624, spaces.Box(-1.0, 1.0, (actions,), np.float32), load_config("dmc").behavior.actor)
    assert not actor.discrete
    official = common.MLP(actions, layers=4, units=400, act="elu", norm="none", dist="trunc_normal", min_std=0.1)
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (64, 1624)).astype(np.float32)
    official(tf.constant(x))  # creates its layers
    linears = [m for m in actor.mlp.net if isinstance(m, torch.nn.Linear)]
    mods = official._modules
    pairs = [(linears[i].weight.T, linears[i].bias, mods[f"dense{i}"]) for i in range(4)]
    last = linears[-1]
    pairs += [(last.weight[:actions].T, last.bias[:actions], mods["out"]._modules["out"]),
              (last.weight[actions:].T, last.bias[actions:], mods["out"]._modules["std"])]
    for kernel, bias, layer in pairs:
        layer.kernel.assign(kernel.detach().numpy())
        layer.bias.assign(bias.detach().numpy())
    action = np.clip(rng.normal(0, 0.6, (64, actions)), -0.999, 0.999).astype(np.float32)
    weight = rng.normal(size=64).astype(np.float32)
    dist = actor(torch.from_numpy(x))
    logp, ent = dist.log_prob(torch.from_numpy(action)), dist.entropy()
    actor.zero_grad()
    ((logp + ent) * torch.from_numpy(weight)).sum().backward()
    variables = [v for _, _, layer in pairs for v in (layer.kernel, layer.bias)]
    with tf.GradientTape() as tape:
        odist = official(tf.constant(x))
        ologp, oent = odist.log_prob(tf.constant(action)), odist.entropy()
        oscalar = tf.reduce_sum((ologp + oent) * weight)
    ograds = tape.gradient(oscalar, variables)
    section = "actor, continuous (truncated normal, 6 actions)"
    table.check(section, "log π(a | z)", logp, ologp, FORWARD)
    table.check(section, "entropy H[π]", ent, oent, FORWARD)
    table.check(section, "mode", dist.mode(), odist.mode(), FORWARD)
    grads = []
    for i, layer in enumerate(linears[:4]):
        grads += [(f"dense{i}.weight", layer.weight.grad.T, ograds[2 * i]),
                  (f"dense{i}.bias", layer.bias.grad, ograds[2 * i + 1])]
    grads += [("out.weight", last.weight.grad[:actions].T, ograds[8]), ("out.bias", last.bias.grad[:actions], ograds[9]),
              ("std.weight", last.weight.grad[actions:].T, ograds[10]), ("std.bias", last.bias.grad[actions:], ograds[11])]
    table.check_all(section, "gradient of Σ w·(log π + H)", grads, GRADIENT)
