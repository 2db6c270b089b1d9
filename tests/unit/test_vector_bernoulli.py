"""world_model.decoder.vector_dist=bernoulli: the vector decoder's likelihood for 0/1 grids."""

import gymnasium
import numpy as np
import pytest
import torch

from reverie.agent import Agent
from reverie.config import load_config
from reverie.errors import TaskError
from reverie.nn.distributions import Bernoulli

GRID = {"vector": gymnasium.spaces.Box(0.0, 1.0, (12,), np.float32)}
ACTIONS = gymnasium.spaces.Discrete(3)


def test_bernoulli_sums_event_dims_by_hand():
    logits = torch.tensor([[0.0, np.log(3.0)], [2.0, -1.0]], dtype=torch.float32)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # log σ(0) + log(1 − σ(ln 3)) = log ½ + log ¼ ; log(1 − σ(2)) + log σ(−1)
    expected = torch.tensor([np.log(0.5) + np.log(0.25),
                             np.log(1 - 1 / (1 + np.exp(-2.0))) + np.log(1 / (1 + np.exp(1.0)))], dtype=torch.float32)
    torch.testing.assert_close(Bernoulli(logits, event_dims=1).log_prob(target), expected)
    assert Bernoulli(logits).log_prob(target).shape == (2, 2)  # the discount head: per element


def test_world_model_image_loss_is_the_bernoulli_likelihood():
    config = load_config("debug", ["world_model.decoder.vector_dist=bernoulli"])
    agent = Agent(config, GRID, ACTIONS)
    wm = agent.world_model
    rng = np.random.default_rng(0)
    batch = {"vector": (rng.random((2, 5, 12)) < 0.2).astype(np.float32),
             "action": np.eye(3, dtype=np.float32)[rng.integers(3, size=(2, 5))],
             "reward": np.zeros((2, 5), np.float32), "is_first": np.eye(5, dtype=bool)[[0, 0]],
             "is_last": np.zeros((2, 5), bool), "is_terminal": np.zeros((2, 5), bool)}
    torch.manual_seed(0)
    observed = wm.observe(batch)
    post, (_, metrics) = observed.post, wm.loss(observed)
    logits = wm.heads["decoder"].mlp(wm.rssm.get_feat(post))
    target = torch.as_tensor(batch["vector"])
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 10
    torch.testing.assert_close(metrics["image_loss"], by_hand.detach(), rtol=1e-5, atol=1e-5)


def test_bernoulli_refuses_vectors_outside_the_unit_interval():
    space = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)}
    with pytest.raises(TaskError, match=r"vector_dist=bernoulli needs vector observations in \[0, 1\]"):
        Agent(load_config("debug", ["world_model.decoder.vector_dist=bernoulli"]), space, ACTIONS)
