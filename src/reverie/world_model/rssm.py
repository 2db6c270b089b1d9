"""Recurrent State-Space Model (section 2.1, Figure 2): GRU state ``deter`` + stochastic ``stoch``.

Batch-major: sequences are ``[B, T, ...]``, single steps ``[B, ...]``. A state is a dict
``{"deter" [B, deter], "stoch" [B, stoch, classes], "logits" [B, stoch, classes]}``
(categorical latents) or ``{"deter", "stoch" [B, stoch], "mean", "std"}`` (``classes == 0``,
the Gaussian ablation). Follows the official TF2 code (danijar/dreamerv2, ``common/nets.py``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reverie.config import RSSMConfig
from reverie.contracts import State
from reverie.nn.distributions import Normal, OneHotDist
from reverie.nn.layers import GRUCell, official_init

# What a step makes of its latent's statistics: a sample of z (training, acting), the mode
# (evaluation), or no z at all (a prior that only the KL reads, through its statistics).
Draw = Literal["sample", "mode", "stats"]
# Reverie's layer names (the paper's words) → the official TF2 code's, for the parity suite;
# checkpoints written under the official names load too (see ``_rename_old_keys``).
OFFICIAL_NAMES = {"recurrent_in": "img_in", "prior_head": "img_out", "posterior_head": "obs_out"}


def latent_dist(state: State) -> OneHotDist | Normal:
    """Distribution of the stochastic state, independent over latents; computed in float32."""
    if "logits" in state:
        return OneHotDist(state["logits"].float(), event_dims=2)
    return Normal(state["mean"].float(), state["std"].float(), event_dims=1)


def stack_states(states: list[State], dim: int = 1) -> State:
    """A list of step states ``[B, ...]`` → one sequence state ``[B, T, ...]``."""
    return {k: torch.stack([s[k] for s in states], dim) for k in states[0]}


def _reset(state: State, action: torch.Tensor, keep: torch.Tensor | None) -> tuple[State, torch.Tensor]:
    """Zero the state and action where ``keep [B]`` is 0 (an episode start): the initial state.
    ``keep=None``: no episode starts at this step, nothing to do (the same values)."""
    if keep is None:
        return state, action
    keep = keep[:, None]
    return {k: v * (keep[..., None] if v.dim() == 3 else keep) for k, v in state.items()}, action * keep


def _keep_masks(is_first: torch.Tensor, every_step: bool = False) -> list[torch.Tensor | None]:
    """``is_first [B, T]`` → per step, ``1 − is_first[:, t]`` or None where no sequence starts
    an episode at t (most steps): the reset multiplications (~10 ops per step with their
    backward) are then skipped. Decided on the host for CPU tensors only; on a GPU reading
    the flags would wait for the device, so every step keeps its mask there, as it does
    with ``every_step`` (a compiled loop, whose graph must not depend on the flags)."""
    keep = 1.0 - is_first.float()
    if every_step or is_first.device.type != "cpu":
        return list(keep.unbind(1))
    starts = is_first.bool().any(0).tolist()
    return [keep[:, t] if start else None for t, start in enumerate(starts)]


class RSSM(nn.Module):
    """h_t = f(h_{t−1}, z_{t−1}, a_{t−1}); prior p(z_t | h_t); posterior q(z_t | h_t, e_t).

    ``embed_dim``: width of the encoder output; ``action_dim``: width of the action vector.
    ``feat_dim = deter + stoch·classes`` (or ``deter + stoch`` for the Gaussian variant).
    """

    def __init__(self, config: RSSMConfig, embed_dim: int, action_dim: int):
        super().__init__()
        self.deter, self.stoch, self.classes = config.deter, config.stoch, config.classes
        self.min_std = config.min_std
        stoch_dim = self.stoch * self.classes if self.classes else self.stoch
        stats_dim = stoch_dim if self.classes else 2 * self.stoch
        self.feat_dim = self.deter + stoch_dim
        # Recurrent model h_t = f(h_{t−1}, z_{t−1}, a_{t−1}): an MLP of (z, a) into the GRU.
        self.recurrent_in = nn.Sequential(nn.Linear(stoch_dim + action_dim, config.hidden), nn.ELU())
        self.gru = GRUCell(config.hidden, self.deter, layer_norm=config.layer_norm)
        # Prior (transition predictor) p(z_t | h_t) and posterior (representation model)
        # q(z_t | h_t, e_t): each an MLP to the latent's statistics.
        self.prior_head = nn.Sequential(nn.Linear(self.deter, config.hidden), nn.ELU(),
                                        nn.Linear(config.hidden, stats_dim))
        self.posterior_head = nn.Sequential(
            nn.Linear(self.deter + embed_dim, config.hidden), nn.ELU(), nn.Linear(config.hidden, stats_dim)
        )
        self.apply(official_init)
        self._register_load_state_dict_pre_hook(_rename_old_keys)
        self.loop_compiled = False  # set by compile_loop

    @property
    def device(self) -> torch.device:
        return self.recurrent_in[0].weight.device

    def initial(self, batch_size: int) -> State:
        """The all-zero state of the official code, ``[batch_size, ...]``."""
        zeros = lambda *shape: torch.zeros(batch_size, *shape, device=self.device)  # noqa: E731
        if self.classes:
            return {"deter": zeros(self.deter), "stoch": zeros(self.stoch, self.classes),
                    "logits": zeros(self.stoch, self.classes)}
        return {"deter": zeros(self.deter), "stoch": zeros(self.stoch), "mean": zeros(self.stoch),
                "std": zeros(self.stoch)}

    def get_feat(self, state: State) -> torch.Tensor:
        """concat(deter, flattened stoch): ``[..., feat_dim]``."""
        stoch = state["stoch"].flatten(-2) if self.classes else state["stoch"]
        return torch.cat([state["deter"], stoch.to(state["deter"].dtype)], -1)

    def observe(
        self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, state: State | None = None,
        draw: Draw = "sample",
    ) -> tuple[State, State]:
        """Posterior and prior over a sequence. ``embed [B, T, E]``, ``action [B, T, A]`` (the
        action that led to step t), ``is_first [B, T]`` → ``(post, prior)`` each ``[B, T, ...]``;
        ``prior`` holds ``deter`` and the statistics, no ``stoch`` (only the KL uses it).
        Where ``is_first`` the previous state and action are reset to zero (the initial state),
        as in the official code. ``draw="mode"`` makes the posterior path deterministic."""
        if state is None:
            state = self.initial(embed.shape[0])
        # The embedding's share of the posterior layer, for all T in one matrix product;
        # the step loop only adds the deter share (same sum, regrouped).
        embed_proj = self._embed_proj(embed)
        deter_weight = self._deter_weight()  # sliced once: one slice backward, not one per step
        keeps = _keep_masks(is_first, every_step=self.loop_compiled)
        return self._observe_steps(state, action, embed_proj, keeps, draw, deter_weight)

    def _observe_steps(self, state: State, action: torch.Tensor, embed_proj: torch.Tensor,
                       keeps: list[torch.Tensor | None], draw: Draw, deter_weight: torch.Tensor) -> tuple[State, State]:
        """The step loop of ``observe`` (``compile_loop`` compiles it whole)."""
        posts, priors = [], []
        for t, keep in enumerate(keeps):
            state, prior = self._obs_step(state, action[:, t], embed_proj[:, t], keep, draw, deter_weight)
            posts.append(state)
            priors.append(prior)
        return stack_states(posts), stack_states(priors)

    def compile_loop(self) -> None:
        """``torch.compile`` the observe loop whole: one graph for all T steps, forward and
        backward, instead of ~50 ops per step and their backward (gym,cartpole, 2 threads: the
        observe forward and the world model's backward 13 ms faster per update, docs/SPEED.md).
        Every step applies its reset mask (a multiplication by 1 where no episode starts: the
        same values), so the graph does not depend on where episodes start. One graph per
        batch shape; the loop is unrolled, so compiling takes longer than the steps alone."""
        self._observe_steps = torch.compile(self._observe_steps, fullgraph=True, dynamic=False)
        self.loop_compiled = True

    def imagine(self, action: torch.Tensor, state: State | None = None) -> State:
        """Prior rollout with the given actions: ``action [B, T, A]`` → prior states ``[B, T, ...]``."""
        if state is None:
            state = self.initial(action.shape[0])
        priors = []
        for t in range(action.shape[1]):
            state = self.img_step(state, action[:, t])
            priors.append(state)
        return stack_states(priors)

    def post_step(
        self, prev_state: State, prev_action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor,
        draw: Draw = "sample",
    ) -> State:
        """One posterior step ``[B, ...]``, for acting: the same deter and posterior as a step
        of ``observe`` (where ``is_first`` the previous state and action are reset to zero, the
        initial state, as in the official code), without the prior's layers and sample."""
        prev_state, prev_action = _reset(prev_state, prev_action, _keep_masks(is_first[:, None])[0])
        deter = self._deter_step(prev_state, prev_action)
        return self._post_from_deter(deter, self._embed_proj(embed), draw, self._deter_weight())

    def _embed_proj(self, embed: torch.Tensor) -> torch.Tensor:
        """W_e·embed + b of the posterior's first layer, W = [W_d | W_e] over concat(deter, embed)."""
        layer = self.posterior_head[0]
        return F.linear(embed, layer.weight[:, self.deter:], layer.bias)

    def _deter_weight(self) -> torch.Tensor:
        """W_d, the deter share of the posterior's first layer ``[hidden, deter]``."""
        return self.posterior_head[0].weight[:, : self.deter]

    def _obs_step(
        self, prev_state: State, prev_action: torch.Tensor, embed_proj: torch.Tensor, keep: torch.Tensor | None,
        draw: Draw, deter_weight: torch.Tensor,
    ) -> tuple[State, State]:
        prev_state, prev_action = _reset(prev_state, prev_action, keep)
        # The prior enters only the KL (through its statistics): no sample is drawn for it.
        prior = self.img_step(prev_state, prev_action, draw="stats")
        return self._post_from_deter(prior["deter"], embed_proj, draw, deter_weight), prior

    def _post_from_deter(self, deter: torch.Tensor, embed_proj: torch.Tensor, draw: Draw,
                         deter_weight: torch.Tensor) -> State:
        hidden = embed_proj + F.linear(deter, deter_weight)
        return {"deter": deter, **self._stoch_state(self.posterior_head[1:](hidden), draw)}

    def img_step(self, prev_state: State, prev_action: torch.Tensor, draw: Draw = "sample") -> State:
        """One prior step ``[B, ...]``: z_{t−1}, a_{t−1}, h_{t−1} → h_t, p(z_t | h_t), z_t
        (``draw="stats"``: h_t and the statistics only, no z_t)."""
        deter = self._deter_step(prev_state, prev_action)
        return {"deter": deter, **self._stoch_state(self.prior_head(deter), draw)}

    def _deter_step(self, prev_state: State, prev_action: torch.Tensor) -> torch.Tensor:
        """h_t = GRU(h_{t−1}, MLP(z_{t−1}, a_{t−1})) ``[B, deter]``."""
        stoch = prev_state["stoch"].flatten(-2) if self.classes else prev_state["stoch"]
        return self.gru(self.recurrent_in(torch.cat([stoch, prev_action], -1)), prev_state["deter"])

    def _stoch_state(self, stats: torch.Tensor, draw: Draw) -> State:
        """Network statistics → ``{"stoch", "logits"}`` or ``{"stoch", "mean", "std"}``, float32;
        ``stoch`` is a sample (``draw="sample"``), the mode (``"mode"``) or left out (``"stats"``)."""
        stats = stats.float()
        if self.classes:
            logits = stats.unflatten(-1, (self.stoch, self.classes))
            if draw == "stats":
                return {"logits": logits}
            dist = OneHotDist(logits, event_dims=2)
            return {"stoch": dist.sample() if draw == "sample" else dist.mode(), "logits": logits}
        mean, std = stats.chunk(2, -1)
        std = 2 * torch.sigmoid(std / 2) + self.min_std  # official code
        if draw == "stats":
            return {"mean": mean, "std": std}
        dist = Normal(mean, std, event_dims=1)
        return {"stoch": dist.rsample() if draw == "sample" else dist.mode(), "mean": mean, "std": std}


def _rename_old_keys(state_dict: dict, prefix: str, *args) -> None:
    """Load-time hook: parameters saved under the official names (``img_in``, ``img_out``,
    ``obs_out``; Reverie before the rename) are read under the paper's names."""
    for new, old in OFFICIAL_NAMES.items():
        for key in [k for k in state_dict if k.startswith(f"{prefix}{old}.")]:
            state_dict[f"{prefix}{new}." + key[len(f"{prefix}{old}."):]] = state_dict.pop(key)
