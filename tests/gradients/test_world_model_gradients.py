"""Which world-model parameters each loss term reaches, and how grad_heads cuts them.

Each term is isolated by setting the other loss scales (and β) to zero in the config, so
the test drives the real ``WorldModel.loss``.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie.agent import build_world_model
from reverie.config import load_config

B, L = 2, 6
TERMS = ("image", "reward", "discount", "kl")
REPRESENTATION = {"encoder", "recurrent_in", "gru", "posterior_head"}  # what features are computed from


def groups(model):
    """Parameter groups by module: the encoder, the RSSM's parts, each head."""
    rssm = model.rssm
    return {"encoder": model.encoder, "recurrent_in": rssm.recurrent_in, "gru": rssm.gru,
            "prior_head": rssm.prior_head, "posterior_head": rssm.posterior_head, **{name: head for name, head in model.heads.items()}}


def reached(term, grad_heads=("image", "reward", "discount"), obs="image"):
    """Names of the parameter groups that receive a non-zero gradient from ``term`` alone."""
    scales = {k: float(k == term) for k in TERMS if k != "kl"}
    overrides = ["device=cpu", f"world_model.kl.scale={float(term == 'kl')}",
                 f"world_model.grad_heads=[{','.join(grad_heads)}]",
                 *[f"world_model.loss_scales.{k}={v}" for k, v in scales.items()]]
    config = load_config("debug", overrides)
    obs_space = {"image": gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
    if obs == "mixed":
        obs_space["vector"] = gym.spaces.Box(-1, 1, (3,), np.float32)
    torch.manual_seed(0)
    model = build_world_model(config, obs_space, gym.spaces.Discrete(3))
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (B, L, 64, 64, 1), dtype=np.uint8),
             "action": np.eye(3, dtype=np.float32)[rng.integers(0, 3, (B, L))],
             "reward": rng.normal(size=(B, L)).astype(np.float32),
             "is_first": np.eye(1, L, dtype=bool).repeat(B, 0),
             "is_last": np.zeros((B, L), bool), "is_terminal": rng.random((B, L)) < 0.3}
    if obs == "mixed":
        batch["vector"] = rng.normal(size=(B, L, 3)).astype(np.float32)
    loss, _ = model.loss(model.observe(batch))
    loss.backward()
    return {name for name, module in groups(model).items()
            if any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())}


@pytest.mark.parametrize("obs", ["image", "mixed"])
def test_image_loss_reaches_decoder_and_representation(obs):
    # The prior's output layers (prior_head) do not shape posterior features: no gradient.
    assert reached("image", obs=obs) == REPRESENTATION | {"decoder"}


def test_reward_loss_reaches_reward_head_and_representation():
    assert reached("reward") == REPRESENTATION | {"reward"}


def test_discount_loss_reaches_discount_head_and_representation():
    assert reached("discount") == REPRESENTATION | {"discount"}


def test_kl_loss_reaches_prior_and_posterior_but_no_head():
    assert reached("kl") == REPRESENTATION | {"prior_head"}


@pytest.mark.parametrize("term", ["reward", "discount"])
def test_grad_heads_image_only_stops_reward_and_discount_at_their_heads(term):
    assert reached(term, grad_heads=["image"]) == {term}
    assert reached("image", grad_heads=["image"]) == REPRESENTATION | {"decoder"}


@pytest.mark.parametrize("obs", ["image", "mixed"])
def test_no_image_grads_stops_the_decoder_at_its_head(obs):
    assert reached("image", grad_heads=["reward", "discount"], obs=obs) == {"decoder"}
    assert reached("reward", grad_heads=["reward", "discount"], obs=obs) == REPRESENTATION | {"reward"}
