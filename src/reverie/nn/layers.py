"""Layers shared by the world model and the actor-critic. Shapes: any leading dims ``[..., D]``."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``layers`` hidden Linear+ELU layers of ``units``, then a linear output of ``out_dim``.

    As in the official code, hidden layers use ELU and optional LayerNorm (``norm``);
    ``out_dim=0`` returns the last hidden activations.
    """

    def __init__(self, in_dim: int, out_dim: int, layers: int, units: int, norm: bool = False):
        super().__init__()
        blocks: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers):
            blocks.append(nn.Linear(dim, units))
            if norm:
                blocks.append(nn.LayerNorm(units))
            blocks.append(nn.ELU())
            dim = units
        if out_dim:
            blocks.append(nn.Linear(dim, out_dim))
            dim = out_dim
        self.net = nn.Sequential(*blocks)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
