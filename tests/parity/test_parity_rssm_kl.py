"""The RSSM over a sequence (``observe``, with ``is_first`` resets inside it) and the KL loss.

``observe`` samples the posterior at every step: Reverie's draws are recorded and injected
into the official ``OneHotDist`` (which also draws a prior sample per step that nothing
reads; it gets the same draw), so both sides follow the same latent path.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.parity.official import Draws, Pair, gradient_pairs, synthetic_batch, zero_grads

FORWARD = 1e-5
SEQUENCE = 1e-4  # values after many recurrent steps
GRADIENT = 1e-4


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair("atari")


def test_observe_with_resets(pair, table):
    batch = synthetic_batch(4, 16, seed=11)
    is_first = batch["is_first"]
    assert is_first[:, 0].all() and is_first[:, 1:].any(), "the batch must hold episode starts inside sequences"
    rng = np.random.default_rng(12)
    embed = rng.normal(0, 1, (*is_first.shape, pair.wm.encoder.out_dim)).astype(np.float32)
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in
               (("deter", (4, 16, 600)), ("logits", (4, 16, 32, 32)), ("prior", (4, 16, 32, 32)))}
    rssm, orssm = pair.wm.rssm, pair.owm.rssm
    draws = Draws()
    zero_grads(pair.wm)
    with draws.record():
        post, prior = rssm.observe(torch.from_numpy(embed), torch.from_numpy(batch["action"]), torch.from_numpy(is_first))
    steps = is_first.shape[1]
    assert len(draws.recorded) == steps
    scalar = ((post["deter"] * torch.from_numpy(weights["deter"])).sum()
              + (post["logits"] * torch.from_numpy(weights["logits"])).sum()
              + (prior["logits"] * torch.from_numpy(weights["prior"])).sum())
    scalar.backward()
    # The official obs_step samples the prior, then the posterior: each step's draw twice.
    order = [t for t in range(steps) for _ in range(2)]
    args = (tf.constant(embed), tf.constant(batch["action"]), tf.constant(is_first))

    def official():
        with draws.replay(order):
            return orssm.observe(*args)

    opost, oprior = official()
    section = "observe, B=4 L=16 with resets"
    table.check(section, "posterior deter", post["deter"], opost["deter"], SEQUENCE)
    table.check(section, "posterior logits", post["logits"], opost["logit"], SEQUENCE)
    table.check(section, "posterior sample (one-hot)", post["stoch"], opost["stoch"], 0.0)
    table.check(section, "prior logits", prior["logits"], oprior["logit"], SEQUENCE)

    def official_scalar():
        opost, oprior = official()
        return (tf.reduce_sum(opost["deter"] * weights["deter"]) + tf.reduce_sum(opost["logit"] * weights["logits"])
                + tf.reduce_sum(oprior["logit"] * weights["prior"]))

    grads = gradient_pairs(pair, ("rssm.",), official_scalar)
    table.check_all(section, "gradient of Σ w·(deter, logits) on the RSSM (straight-through samples)", grads, GRADIENT)


def _kl_inputs(seed):
    rng = np.random.default_rng(seed)
    post = rng.normal(0, 1.0, (4, 8, 32, 32)).astype(np.float32)
    prior = (0.7 * post + rng.normal(0, 0.8, post.shape)).astype(np.float32)
    return post, prior


def _per_element_kl(post, prior):
    p = torch.log_softmax(torch.from_numpy(post), -1)
    q = torch.log_softmax(torch.from_numpy(prior), -1)
    return (p.exp() * (p - q)).sum((-1, -2))


POST, PRIOR = _kl_inputs(21)
KL = _per_element_kl(POST, PRIOR)
MEAN = float(KL.mean())
_SORTED = KL.flatten().sort().values
# Between the two middle elements: no element sits exactly at `free`, where the two
# frameworks route the gradient of the max differently (a tie of measure zero).
MEDIAN = float(_SORTED[len(_SORTED) // 2 - 1] + _SORTED[len(_SORTED) // 2]) / 2

# (balance, free, free_avg): free 0; free > 0 below the mean KL (not binding); above it
# (binding: the loss is the constant `free` and no gradient flows); per element at the
# median (half the elements bind). balance 0.5 clamps per element whatever free_avg says.
KL_CASES = [
    (0.8, 0.0, True), (0.8, 0.5 * MEAN, True), (0.8, 2.0 * MEAN, True), (0.8, MEDIAN, False),
    (0.5, 0.0, True), (0.5, MEDIAN, True), (0.5, MEDIAN, False),
]


@pytest.mark.parametrize("balance,free,free_avg", KL_CASES,
                         ids=[f"balance{b}-free{f:.2f}-{'avg' if a else 'elem'}" for b, f, a in KL_CASES])
def test_kl_loss(pair, table, balance, free, free_avg):
    from reverie.world_model.kl import kl_loss

    post, prior = (torch.from_numpy(x).requires_grad_() for x in (POST, PRIOR))
    loss, value = kl_loss(post, prior, balance=balance, free=free, free_avg=free_avg)
    loss.backward()
    opost, oprior = tf.Variable(POST), tf.Variable(PRIOR)
    with tf.GradientTape() as tape:
        oloss, ovalue = pair.owm.rssm.kl_loss({"logit": opost}, {"logit": oprior}, forward=False, balance=balance,
                                               free=free, free_avg=free_avg)
    ograds = tape.gradient(oloss, [opost, oprior], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    section = f"kl_loss balance={balance} free={free:.2f} ({'mean' if free_avg else 'per element'})"
    table.check(section, "loss", loss, oloss, FORWARD)
    table.check(section, "KL value (batch mean)", value, tf.reduce_mean(ovalue), FORWARD)
    table.check_all(section, "gradient on posterior and prior logits",
                    [("post", post.grad, ograds[0]), ("prior", prior.grad, ograds[1])], GRADIENT)
