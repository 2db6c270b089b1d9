"""Space helpers shared by the environments and the models: a leaf module (it imports no
other part of Reverie but ``errors``), so the world model and the actor need not know envs."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from reverie.errors import TaskError


def action_dim(act_space: spaces.Discrete | spaces.Box) -> int:
    """Width of the action vector: n for ``Discrete(n)`` (one-hot), d for ``Box([d])``."""
    if isinstance(act_space, spaces.Discrete):
        return int(act_space.n)
    if isinstance(act_space, spaces.Box):
        return int(np.prod(act_space.shape))
    raise TaskError(f"unsupported action space {act_space}; expected Discrete or Box")


class GridBox(spaces.Box):
    """The ``vector`` space of an observation that is a grid of 0/1 cells flattened row-major,
    channels last: float32 ``[H·W·C]`` in [0, 1], plus ``grid = (H, W, C)``, the shape it was
    flattened from (MinAtar: ``(10, 10, C)``).

    The observation itself stays the flat vector, so the replay and the MLP encoder see what
    they saw before; only the grid nets (``world_model.encoder.kind=grid``, ``decoder.kind=grid``)
    read ``grid`` to fold the vector back into cells. It compares equal to a plain ``Box`` of
    the same shape and bounds (gymnasium's ``Box.__eq__``).
    """

    def __init__(self, grid: tuple[int, int, int]):
        if len(grid) != 3 or min(grid) < 1:
            raise TaskError(f"a grid observation needs a shape (H, W, C) of positive sizes, got {tuple(grid)}")
        super().__init__(0.0, 1.0, (int(np.prod(grid)),), np.float32)
        self.grid = tuple(int(n) for n in grid)

    def __repr__(self) -> str:
        return f"GridBox(grid={self.grid}, flat={self.shape})"


def grid_shape(space: spaces.Space) -> tuple[int, int, int] | None:
    """``(H, W, C)`` of a ``GridBox``; None for any other space (a plain vector, an image)."""
    return space.grid if isinstance(space, GridBox) else None
