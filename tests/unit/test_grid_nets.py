"""world_model.encoder.kind / decoder.kind = grid: 3×3 convolutions over a flat 0/1 grid
(MinAtar's [10, 10, C]), its shape from the space (``reverie.spaces.GridBox``).

The spaces here are built by hand; their twins from the real env: ``test_envs_minatar.py``
(MinAtar gives a ``GridBox``) and ``integration/test_minatar_grid_train.py`` (a real run).
"""

import math

import gymnasium
import numpy as np
import pytest
import torch

from reverie.agent import Agent
from reverie.config import load_config
from reverie.errors import TaskError
from reverie.nn.layers import GridDecoder, GridEncoder
from reverie.spaces import GridBox, grid_shape

ACTIONS = gymnasium.spaces.Discrete(3)
GRID = ["world_model.encoder.kind=grid", "world_model.decoder.kind=grid", "device=cpu"]


def test_grid_box_is_the_flat_box_plus_its_grid():
    space = GridBox((10, 10, 4))
    assert space.shape == (400,) and space.dtype == np.float32 and grid_shape(space) == (10, 10, 4)
    assert space == gymnasium.spaces.Box(0.0, 1.0, (400,), np.float32)  # the MLP path sees the same space
    assert grid_shape(gymnasium.spaces.Box(0.0, 1.0, (400,), np.float32)) is None


def test_shapes_of_the_encoder_and_decoder():
    encoder, decoder = GridEncoder((10, 10, 4), depth=8, layers=3), GridDecoder(24, (10, 10, 4), depth=8, layers=3)
    assert encoder(torch.zeros(2, 5, 400)).shape == (2, 5, 10 * 10 * 8) and encoder.out_dim == 800
    assert decoder(torch.zeros(2, 5, 24)).shape == (2, 5, 400) and decoder.out_dim == 400
    convs = [m for m in encoder.net if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)


def test_the_agent_builds_the_grid_nets_only_when_asked():
    space = {"vector": GridBox((10, 10, 4))}
    grid = Agent(load_config("minatar,debug", GRID), space, ACTIONS).world_model
    assert grid.encoder.mlp is None and isinstance(grid.encoder.grid, GridEncoder)
    assert grid.heads["decoder"].mlp is None and isinstance(grid.heads["decoder"].grid, GridDecoder)
    mlp = Agent(load_config("minatar,debug", ["device=cpu", "world_model.encoder.kind=mlp",
                                              "world_model.decoder.kind=mlp"]), space, ACTIONS).world_model
    assert mlp.encoder.grid is None and mlp.heads["decoder"].grid is None and mlp.encoder.mlp is not None


def test_the_encoders_convs_are_shared_by_every_cell():
    # Translation equivariance: one object moved by (dy, dx) moves the features by (dy, dx), for
    # every cell whose 7×7 receptive field (3 convs) lies inside the grid before and after.
    torch.manual_seed(0)
    encoder = GridEncoder((16, 16, 3), depth=4, layers=3)
    for conv in encoder.net[::2]:
        torch.nn.init.normal_(conv.bias)  # non-zero biases: the border would show through any padding error
    grid = torch.zeros(16, 16, 3)
    grid[6, 5, 1] = 1.0
    grid[7, 7, 2] = 1.0
    dy, dx = 2, 3
    moved = torch.roll(grid, (dy, dx), (0, 1))
    features = encoder(grid.reshape(1, -1)).reshape(16, 16, 4)
    features_moved = encoder(moved.reshape(1, -1)).reshape(16, 16, 4)
    # Cells p with p and p + (dy, dx) in [3, 13): both fields clear of the zero border.
    torch.testing.assert_close(features_moved[3 + dy:13, 3 + dx:13], features[3:13 - dy, 3:13 - dx])
    assert not torch.allclose(features_moved, features)  # the features did move
    # Shared weights: the parameter count does not depend on the grid's size.
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(GridEncoder((10, 10, 3), 4, 3)) == count(GridEncoder((16, 30, 3), 4, 3)) == count(encoder)


def test_image_loss_is_the_bernoulli_log_likelihood_per_cell_by_hand():
    # The decoder's weights zeroed, the last conv's biases b = (0, ln 3) for the 2 channels: every
    # cell's logits are b, i.e. p(channel 0) = 1/2, p(channel 1) = 3/4, whatever the features.
    config = load_config("minatar,debug", [*GRID, "world_model.decoder.vector_dist=bernoulli"])
    agent = Agent(config, {"vector": GridBox((2, 2, 2))}, ACTIONS)
    wm = agent.world_model
    with torch.no_grad():
        for param in wm.heads["decoder"].parameters():
            param.zero_()
        wm.heads["decoder"].grid.net[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    # One step's grid [2, 2, 2], channels last: channel 1 is on in 3 cells, channel 0 in 1.
    cells = np.array([[[1, 1], [0, 1]], [[0, 0], [0, 1]]], np.float32)
    # Channel 0: 4 cells at p = 1/2 whatever the target; channel 1: 3 on at 3/4, 1 off at 1/4.
    by_hand = -(4 * math.log(0.5) + 3 * math.log(0.75) + math.log(0.25))
    batch = {"vector": np.broadcast_to(cells.reshape(-1), (2, 3, 8)).copy(),
             "action": np.eye(3, dtype=np.float32)[np.zeros((2, 3), int)],
             "reward": np.zeros((2, 3), np.float32), "is_first": np.eye(3, dtype=bool)[[0, 0]],
             "is_last": np.zeros((2, 3), bool), "is_terminal": np.zeros((2, 3), bool)}
    _, metrics = wm.loss(wm.observe(batch))
    assert metrics["image_loss"].item() == pytest.approx(by_hand, rel=1e-6)  # −mean over [B, T] of Σ cells


def test_grid_kinds_refuse_an_observation_without_a_grid():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)}
    with pytest.raises(TaskError, match=r"world_model.encoder.kind=grid needs a grid observation .*--preset minatar"
                                        r".* gives vector\[4\]"):
        Agent(load_config("gym,debug", ["world_model.encoder.kind=grid", "device=cpu"]), vector, ACTIONS)
    image = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
    with pytest.raises(TaskError, match=r"world_model.decoder.kind=grid needs .* gives image\[64, 64, 1\]"):
        Agent(load_config("atari,debug", ["world_model.decoder.kind=grid", "device=cpu"]), image, ACTIONS)
