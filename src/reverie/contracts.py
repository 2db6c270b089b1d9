"""The named types the parts exchange (docs/ARCHITECTURE.md): one choice, ``TypedDict``,
so that they stay plain dicts at run time (checkpoints, ``torch.compile``, the official-code
parity suite) while the type checker and the reader see their keys.

A leaf module: it imports nothing else from Reverie, so every layer may use it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypedDict

import numpy as np
import torch


class State(TypedDict, total=False):
    """An RSSM state, ``[B, ...]`` for one step or ``[B, T, ...]`` for a sequence.

    ``deter`` h ``[deter]``; categorical latents: ``stoch`` z ``[stoch, classes]`` (one-hot)
    and ``logits``; Gaussian latents (``classes == 0``): ``stoch`` ``[stoch]``, ``mean``,
    ``std``. A prior that only the KL reads has no ``stoch``."""

    deter: torch.Tensor
    stoch: torch.Tensor
    logits: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class Batch(TypedDict, total=False):
    """Replay sequences ``[B, L, ...]`` as ``Replay.sample`` returns them: the observation
    keys (``image`` uint8 ``[H, W, C]`` and/or ``vector`` float32 ``[D]``), ``action``
    ``[A]`` (the action that led to the step), ``reward``, and the flags. ``is_first`` is
    true at every sequence's first step and at each episode start inside it."""

    image: np.ndarray
    vector: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    is_first: np.ndarray
    is_last: np.ndarray
    is_terminal: np.ndarray


class Trajectory(TypedDict):
    """An imagined rollout, time-major: T = H + 1 states from N = B·L starts.

    ``feat`` ``[T, N, F]``; ``action`` ``[T, N, A]`` (``action[t]`` led to state t,
    ``action[0]`` zeros); ``reward``, ``discount``, ``weight`` ``[T, N]``; ``actor_out``
    ``[T − 1, N, out]``: the actor network's raw outputs (logits, or mean and std before the
    distribution) at states 0..H−1, with their graph to the actor's parameters."""

    feat: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    weight: torch.Tensor
    actor_out: torch.Tensor


class Observed(NamedTuple):
    """What the world model makes of a batch (``WorldModel.observe``), the input of its loss:
    ``data`` (the preprocessed batch, tensors), ``post`` and ``prior`` ``[B, T, ...]``, and
    ``feat`` ``[B, T, F]`` (the posterior's features)."""

    data: dict[str, torch.Tensor]
    post: State
    prior: State
    feat: torch.Tensor


PolicyState = tuple[State, torch.Tensor]  # (latent [N, ...], previous action [N, A])


class AgentContract(Protocol):
    """What the training loop, evaluation and the benchmarks use of an agent
    (``reverie.agent.Agent`` implements it)."""

    config: Any
    device: torch.device
    updates: int  # train calls so far
    step: int  # the schedules' clock: agent steps, set by the training loop before each action

    def policy(self, obs: dict[str, np.ndarray], state: PolicyState | None = None,
               mode: str = "train") -> tuple[np.ndarray, PolicyState]: ...

    def train(self, batch: Batch) -> dict[str, float]: ...

    def report(self, batch: Batch) -> dict[str, np.ndarray]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
