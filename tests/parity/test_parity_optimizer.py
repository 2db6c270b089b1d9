"""Optimizer steps from identical gradients: global-norm clipping, decoupled weight decay,
Adam with ε (``reverie.nn.optim.Optimizer`` vs the official ``common.Optimizer``, whose Adam
is Keras' legacy Adam through the shim).

The parameters are Reverie's critic (the atari preset's 4×400 MLP); the official side holds
the same values in plain ``tf.Variable``s (an optimizer does not care about layouts). Each
step feeds both the same gradient: a loss ``Σ θ·g`` on the official side, ``.grad = g`` on
Reverie's. The first step has a zero gradient (decay alone: Adam's update is 0/(0 + ε));
the others mix element scales from 1e-7 to 1, so that Adam's ε matters for some of them,
and two have a global norm above the clip (100).

Run in float32 (the training dtype) and in float64. In float32 an update of ~1e-4 on a
parameter of ~0.05 is resolved only to one unit in the last place of the parameter (~4e-9,
so ~1e-4 of the update) and the decay step (5e-8) to ~10%; float64 resolves both.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from reverie.agent import build_optimizer
from reverie.config import load_config
from reverie.nn.layers import MLP
from tests.parity.official import common

# Relative to the largest element of each step's parameter update and of the gradient norm.
# float32: the rounding of the parameters themselves (see above); the norm is a sum of 1.1M
# squares. float64: Keras keeps lr, β1, β2 as float32 hyper-variables whatever the variable
# dtype (1 − β2 = 0.000999987 for 0.999: 1.3e-5 relative in v at step 1).
TOLERANCE = {"float32": {"update": 3e-4, "decay": 0.2, "norm": 1e-4},
             "float64": {"update": 2e-5, "decay": 1e-9, "norm": 1e-12}}
NORMS = [0.0, 300.0, 50.0, 1.0, 1e-3, 120.0, 5.0]  # global gradient norm of each step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_steps_from_identical_gradients(table, dtype):
    config = load_config("atari")
    opt_config = config.behavior.critic_opt
    tol = TOLERANCE[dtype]
    torch.manual_seed(0)
    net = MLP(1624, 1, 4, 400).to(getattr(torch, dtype))
    params = list(net.parameters())
    variables = [tf.Variable(p.detach().numpy()) for p in params]
    holder = tf.Module()
    holder.vars = variables
    ocfg = dict(lr=opt_config.lr, eps=opt_config.eps, clip=opt_config.clip, wd=opt_config.weight_decay)
    theirs = common.Optimizer("critic", **ocfg)
    mine = build_optimizer("critic", params, opt_config)
    rng = np.random.default_rng(0)
    section = (f"optimizer, {dtype} (Adam lr={opt_config.lr:g} ε={opt_config.eps:g}, clip {opt_config.clip:g}, "
               f"decay {opt_config.weight_decay:g})")
    for step, norm in enumerate(NORMS):
        grads = []
        for p in params:
            scale = 10.0 ** rng.uniform(-7, 0, size=p.shape)  # elements from 1e-7 to 1
            grads.append(rng.normal(size=p.shape) * scale)
        total = np.sqrt(sum(float((g**2).sum()) for g in grads))
        grads = [(g * (norm / total)).astype(dtype) for g in grads]
        before = [p.detach().clone() for p in params]
        obefore = [v.numpy().copy() for v in variables]
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.copy())
        metrics = mine.step(None, step)
        with tf.GradientTape() as tape:
            # The official optimizer asserts a float32 loss; the cast keeps float64 gradients.
            loss = tf.cast(tf.add_n([tf.reduce_sum(v * g) for v, g in zip(variables, grads)]), tf.float32)
        ometrics = theirs(tape, loss, holder)
        update = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)])
        oupdate = np.concatenate([(v.numpy() - b).flatten() for v, b in zip(variables, obefore)])
        if norm == 0:
            table.check(section, f"step {step + 1}: zero gradient, decay alone: Δθ = −wd·θ", update, oupdate,
                        tol["decay"])
            continue
        table.check(section, f"step {step + 1}: gradient norm {norm:g} (before clipping)",
                    metrics["critic_grad_norm"], ometrics["critic_grad_norm"], tol["norm"])
        table.check(section, f"step {step + 1}: parameter update Δθ (norm {norm:g}{', clipped' if norm > 100 else ''})",
                    update, oupdate, tol["update"])
