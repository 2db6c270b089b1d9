"""Recurrent State-Space Model (section 2.1, Figure 2): GRU state ``deter`` + stochastic ``stoch``.

Batch-major: sequences are ``[B, T, ...]``, single steps ``[B, ...]``. A state is a dict
``{"deter" [B, deter], "stoch" [B, stoch, classes], "logits" [B, stoch, classes]}``
(categorical latents) or ``{"deter", "stoch" [B, stoch], "mean", "std"}`` (``classes == 0``,
the Gaussian ablation). Follows the official TF2 code (danijar/dreamerv2, ``common/nets.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reverie.config import RSSMConfig
from reverie.nn.distributions import Normal, OneHotDist
from reverie.nn.layers import GRUCell, official_init

State = dict[str, torch.Tensor]


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


def _keep_masks(is_first: torch.Tensor) -> list[torch.Tensor | None]:
    """``is_first [B, T]`` → per step, ``1 − is_first[:, t]`` or None where no sequence starts
    an episode at t (most steps): the reset multiplications (~10 ops per step with their
    backward) are then skipped. Decided on the host for CPU tensors only; on a GPU reading
    the flags would wait for the device, so every step keeps its mask there."""
    keep = 1.0 - is_first.float()
    if is_first.device.type != "cpu":
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
        self.img_in = nn.Sequential(nn.Linear(stoch_dim + action_dim, config.hidden), nn.ELU())
        self.gru = GRUCell(config.hidden, self.deter, layer_norm=config.layer_norm)
        self.img_out = nn.Sequential(nn.Linear(self.deter, config.hidden), nn.ELU(), nn.Linear(config.hidden, stats_dim))
        self.obs_out = nn.Sequential(
            nn.Linear(self.deter + embed_dim, config.hidden), nn.ELU(), nn.Linear(config.hidden, stats_dim)
        )
        self.apply(official_init)

    @property
    def device(self) -> torch.device:
        return self.img_in[0].weight.device

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

    def get_dist(self, state: State) -> OneHotDist | Normal:
        return latent_dist(state)

    def observe(
        self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, state: State | None = None
    ) -> tuple[State, State]:
        """Posterior and prior over a sequence. ``embed [B, T, E]``, ``action [B, T, A]`` (the
        action that led to step t), ``is_first [B, T]`` → ``(post, prior)`` each ``[B, T, ...]``;
        ``prior`` holds ``deter`` and the statistics, no ``stoch`` (only the KL uses it)."""
        if state is None:
            state = self.initial(embed.shape[0])
        # The embedding's share of the posterior layer, for all T in one matrix product;
        # the step loop only adds the deter share (same sum, regrouped).
        embed_proj = self._embed_proj(embed)
        deter_weight = self._deter_weight()  # sliced once: one slice backward, not one per step
        posts, priors = [], []
        for t, keep in enumerate(_keep_masks(is_first)):
            state, prior = self._obs_step(state, action[:, t], embed_proj[:, t], keep, True, deter_weight)
            posts.append(state)
            priors.append(prior)
        return stack_states(posts), stack_states(priors)

    def imagine(self, action: torch.Tensor, state: State | None = None) -> State:
        """Prior rollout with the given actions: ``action [B, T, A]`` → prior states ``[B, T, ...]``."""
        if state is None:
            state = self.initial(action.shape[0])
        priors = []
        for t in range(action.shape[1]):
            state = self.img_step(state, action[:, t])
            priors.append(state)
        return stack_states(priors)

    def obs_step(
        self, prev_state: State, prev_action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor,
        sample: bool = True,
    ) -> tuple[State, State]:
        """One posterior step ``[B, ...]`` → ``(post, prior)`` (``prior`` without ``stoch``, as in
        ``observe``). Where ``is_first`` the previous
        state and action are reset to zero (the initial state), as in the official code."""
        return self._obs_step(prev_state, prev_action, self._embed_proj(embed), _keep_masks(is_first[:, None])[0],
                              sample, self._deter_weight())

    def post_step(
        self, prev_state: State, prev_action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor,
        sample: bool = True,
    ) -> State:
        """``obs_step`` without the prior: the posterior ``[B, ...]`` only, for acting.

        The same deter and posterior as ``obs_step`` (the prior's statistics and sample are
        not computed, which saves two layers and a sample per environment step).
        """
        prev_state, prev_action = _reset(prev_state, prev_action, _keep_masks(is_first[:, None])[0])
        deter = self._deter_step(prev_state, prev_action)
        return self._post_from_deter(deter, self._embed_proj(embed), sample, self._deter_weight())

    def _embed_proj(self, embed: torch.Tensor) -> torch.Tensor:
        """W_e·embed + b of the posterior's first layer, W = [W_d | W_e] over concat(deter, embed)."""
        layer = self.obs_out[0]
        return F.linear(embed, layer.weight[:, self.deter:], layer.bias)

    def _deter_weight(self) -> torch.Tensor:
        """W_d, the deter share of the posterior's first layer ``[hidden, deter]``."""
        return self.obs_out[0].weight[:, : self.deter]

    def _obs_step(
        self, prev_state: State, prev_action: torch.Tensor, embed_proj: torch.Tensor, keep: torch.Tensor | None,
        sample: bool, deter_weight: torch.Tensor,
    ) -> tuple[State, State]:
        prev_state, prev_action = _reset(prev_state, prev_action, keep)
        # The prior enters only the KL (through its statistics): no sample is drawn for it.
        prior = self.img_step(prev_state, prev_action, sample=None)
        return self._post_from_deter(prior["deter"], embed_proj, sample, deter_weight), prior

    def _post_from_deter(self, deter: torch.Tensor, embed_proj: torch.Tensor, sample: bool,
                         deter_weight: torch.Tensor) -> State:
        hidden = embed_proj + F.linear(deter, deter_weight)
        return {"deter": deter, **self._stoch_state(self.obs_out[1:](hidden), sample)}

    def img_step(self, prev_state: State, prev_action: torch.Tensor, sample: bool | None = True) -> State:
        """One prior step ``[B, ...]``: z_{t−1}, a_{t−1}, h_{t−1} → h_t, p(z_t | h_t), z_t
        (``sample=None``: h_t and the statistics only, no z_t)."""
        deter = self._deter_step(prev_state, prev_action)
        return {"deter": deter, **self._stoch_state(self.img_out(deter), sample)}

    def _deter_step(self, prev_state: State, prev_action: torch.Tensor) -> torch.Tensor:
        """h_t = GRU(h_{t−1}, MLP(z_{t−1}, a_{t−1})) ``[B, deter]``."""
        stoch = prev_state["stoch"].flatten(-2) if self.classes else prev_state["stoch"]
        return self.gru(self.img_in(torch.cat([stoch, prev_action], -1)), prev_state["deter"])

    def _stoch_state(self, stats: torch.Tensor, sample: bool | None) -> State:
        """Network statistics → ``{"stoch", "logits"}`` or ``{"stoch", "mean", "std"}``, float32;
        ``stoch`` is a sample (``sample=True``), the mode (False) or left out (None)."""
        stats = stats.float()
        if self.classes:
            logits = stats.unflatten(-1, (self.stoch, self.classes))
            if sample is None:
                return {"logits": logits}
            dist = OneHotDist(logits, event_dims=2)
            return {"stoch": dist.sample() if sample else dist.mode(), "logits": logits}
        mean, std = stats.chunk(2, -1)
        std = 2 * torch.sigmoid(std / 2) + self.min_std  # official code
        if sample is None:
            return {"mean": mean, "std": std}
        dist = Normal(mean, std, event_dims=1)
        return {"stoch": dist.rsample() if sample else dist.mode(), "mean": mean, "std": std}
