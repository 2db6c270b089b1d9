"""λ-returns (Equation 4 of Hafner et al., ICLR 2021). Time-major: ``[T, ...]``."""

from __future__ import annotations

import torch


def lambda_return(
    reward: torch.Tensor,
    value: torch.Tensor,
    discount: torch.Tensor,
    bootstrap: torch.Tensor,
    lambda_: float,
) -> torch.Tensor:
    """λ-targets ``R_t = r_t + γ_t·((1 − λ)·v_{t+1} + λ·R_{t+1})`` with ``R_T = bootstrap``.

    ``reward``, ``value``, ``discount``: ``[T, ...]``; ``bootstrap``: ``[...]`` (the value of
    the state after the last one). Returns ``[T, ...]``. Same as the official code's
    ``common.lambda_return``: ``λ = 1`` gives the discounted Monte-Carlo return bootstrapped
    at T, ``λ = 0`` the 1-step TD target. ``value[0]`` is not used (only ``v_{t+1}``).
    """
    next_value = torch.cat([value[1:], bootstrap[None]], 0)
    inputs = reward + discount * next_value * (1 - lambda_)
    returns = []
    last = bootstrap
    for t in reversed(range(reward.shape[0])):
        last = inputs[t] + discount[t] * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1], 0)
