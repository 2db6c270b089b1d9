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
