"""The agent: the one contract the training loop uses (``docs/ARCHITECTURE.md``, Agent).

``policy`` acts in the environment, ``train`` does one world-model update and then one
actor-critic update in imagination, ``report`` renders open-loop predictions, and
``state_dict``/``load_state_dict`` bundle everything a resumed run needs. Batches are
batch-major ``[B, L, ...]``; policy inputs have a leading batch dim ``[N, ...]``.

The agent is the one place that reads the whole ``Config``: it builds the parts from their own
sections and the plain values they take from the others (``build_world_model``,
``ActorCritic(config.behavior, ...)``, ``build_optimizer``); nothing below it names ``Config``
(docs/ARCHITECTURE.md, Layers).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable
from typing import Any

import gymnasium
import numpy as np
import torch

from reverie.behavior.actor_critic import ActorCritic
from reverie.config import Config, OptConfig
from reverie.contracts import Batch, PolicyState, State
from reverie.nn.layers import autocast
from reverie.nn.optim import Optimizer
from reverie.schedules import parse_schedule
from reverie.utils import cpu_compiler, resolve_device
from reverie.world_model.model import REWARD_TRANSFORMS, WorldModel

MODES = ("train", "eval", "eval_sample", "random")
# Under precision=bf16 on the CPU, policy calls for fewer envs than this run in fp32 (Agent._acts_in_fp32).
BF16_CPU_ACTING_MIN_ENVS = 4


def build_world_model(config: Config, obs_space: dict[str, gymnasium.spaces.Box], act_space: gymnasium.Space,
                      device: torch.device | str | None = None) -> WorldModel:
    """The world model of ``config``: its ``world_model`` section plus γ (``behavior.discount``,
    also the discount head's target), ``env.reward_transform``, ``precision`` and ``device``
    (default: ``config.device`` resolved)."""
    return WorldModel(config.world_model, obs_space, act_space, discount=config.behavior.discount,
                      reward_transform=REWARD_TRANSFORMS[config.env.reward_transform], precision=config.precision,
                      device=resolve_device(config.device) if device is None else device, task=config.task)


def build_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], settings: OptConfig) -> Optimizer:
    """The optimizer of one part from its ``*opt`` section: the ``lr`` schedule string becomes
    the callable ``step -> lr`` (``reverie.schedules``)."""
    return Optimizer(name, parameters, parse_schedule(settings.lr), eps=settings.eps, clip=settings.clip,
                     weight_decay=settings.weight_decay)


class Agent:
    """DreamerV2: world model + actor-critic, their three optimizers and the update counter.

    ``updates`` counts ``train`` calls; the slow critic is refreshed from it. ``step`` is the
    clock of the schedules (learning rates, ρ, η, action noise): the agent step, prefill
    included, which the training loop sets before each action, as the official agent's
    ``tfstep`` (the official schedules read the agent step, not the update count).
    """

    def __init__(self, config: Config, obs_space: dict[str, gymnasium.spaces.Box], act_space: gymnasium.Space):
        self.config = config
        self.device = resolve_device(config.device)
        # Nothing global is set here: threads, memory reuse and TF32 are the entry points'
        # choice (``reverie.runtime.configure``).
        self.world_model = build_world_model(config, obs_space, act_space, self.device)
        self.behavior = ActorCritic(config.behavior, self.world_model.rssm.feat_dim, act_space, self.device)
        # The three optimizers, in one place: world model, actor, critic (each its own
        # clipping, decay and schedule; the slow critic is never trained).
        self.model_opt = build_optimizer("model", self.world_model.parameters(), config.world_model.opt)
        self.actor_opt = build_optimizer("actor", self.behavior.actor.parameters(), config.behavior.actor_opt)
        self.critic_opt = build_optimizer("critic", self.behavior.critic.parameters(), config.behavior.critic_opt)
        self.updates = 0
        self.step = 0  # agent steps; the schedules' clock (set by the training loop)
        self._expl_noise = parse_schedule(config.behavior.expl_noise)
        self._eval_noise = parse_schedule(config.behavior.eval_noise)
        # Under bf16, acting keeps bf16 copies of the acting networks' matmul weights (before
        # ``compile`` wraps anything), refreshed when the weights change: autocast would
        # otherwise recast every weight on every call (docs/SPEED.md).
        self._acting = _ActingCopy(self) if config.precision == "bf16" else None
        self.compiles = config.compile and _can_compile(self.device)
        if self.compiles:
            self.world_model.compile_steps()
            self.behavior.compile_rollout()
            # The actor's MLP, not the actor: imagination calls ``actor.mlp`` and ``actor.dist``.
            for net in (self.behavior.actor.mlp, self.behavior.critic, self.behavior.slow_critic):
                net.compile(dynamic=False)

    # -- acting ---------------------------------------------------------------------------

    @torch.no_grad()
    def policy(self, obs: dict[str, np.ndarray], state: PolicyState | None = None,
               mode: str = "train") -> tuple[np.ndarray, PolicyState]:
        """One step for N environments: ``obs`` values ``[N, ...]`` (with ``is_first``) →
        ``(action float32 [N, A], state)``. ``train`` samples, ``eval`` takes the mode,
        ``eval_sample`` samples (evaluation of the stochastic policy; ``behavior.eval_noise``
        as ``eval``), ``random`` acts uniformly but still tracks the latent so modes can be
        switched."""
        if mode not in MODES:
            raise ValueError(f"policy mode must be one of {MODES}, got {mode!r}")
        wm = self.world_model
        data = wm.preprocess(obs)
        n = data["is_first"].shape[0]
        if state is None:
            state = (wm.rssm.initial(n), torch.zeros(n, wm.action_dim, device=self.device))
        latent, prev_action = state
        plain = (wm.encoder, wm.rssm, self.behavior.actor)
        fp32 = self._acts_in_fp32(n)
        encoder, rssm, actor = self._acting.modules() if self._acting and not fp32 else plain
        with contextlib.nullcontext() if fp32 else self._autocast():
            # post_step resets the latent and previous action where is_first.
            latent = rssm.post_step(latent, prev_action, encoder(data), data["is_first"])
            if mode == "random":
                action = self._random_action(n)
            else:
                dist = actor(rssm.get_feat(latent))
                action = dist.mode() if mode == "eval" else dist.sample()
                action = self._action_noise(action, mode)
        action = action.float()
        return action.cpu().numpy(), (latent, action)

    def _acts_in_fp32(self, envs: int) -> bool:
        """Whether a policy call for ``envs`` envs runs in fp32 although ``precision=bf16``: on
        the CPU below ``BF16_CPU_ACTING_MIN_ENVS``. There a bf16 call is slower than fp32 (the
        RSSM's and actor's matrix-vector products: oneDNN repacks every bf16 weight per call, MKL's
        fp32 kernel does not) and the bf16 copy's re-cast after each update costs 4.5–5 ms at
        atari sizes (docs/SPEED.md, "Acting"); from 4 envs on bf16 is faster. The update keeps
        bf16 either way; on CUDA acting follows ``precision``."""
        return self.config.precision == "bf16" and self.device.type == "cpu" and envs < BF16_CPU_ACTING_MIN_ENVS

    def _action_noise(self, action: torch.Tensor, mode: str) -> torch.Tensor:
        """The official code's ``action_noise``: at ε = 0 the action as it is (no draw); else a
        uniform one-hot with probability ε (discrete) or Normal(action, ε) clipped to [−1, 1]."""
        amount = (self._expl_noise if mode == "train" else self._eval_noise)(self.step)
        if amount == 0:
            return action
        if self.behavior.actor.discrete:
            probs = amount / action.shape[-1] + (1 - amount) * action.float()
            index = torch.multinomial(probs, 1).squeeze(-1)
            return torch.nn.functional.one_hot(index, action.shape[-1]).to(action.dtype)
        return (action + amount * torch.randn_like(action)).clamp(-1, 1)

    def _random_action(self, n: int) -> torch.Tensor:
        """Uniform: a random one-hot for discrete actions, uniform in [−1, 1] for continuous."""
        actor = self.behavior.actor
        if actor.discrete:
            index = torch.randint(actor.act_size, (n,), device=self.device)
            return torch.nn.functional.one_hot(index, actor.act_size).float()
        return torch.rand(n, actor.act_size, device=self.device) * 2 - 1

    # -- learning -------------------------------------------------------------------------

    def train(self, batch: Batch) -> dict[str, float]:
        """One world-model update, then one actor-critic update from its posterior states.

        ``batch``: replay arrays ``[B, L, ...]``. Every sequence starts from the RSSM's zero
        state, as in the official code, whose replay marks the first step of every sampled
        sequence ``is_first`` (``Replay.sample`` does the same). Returns the metrics.
        """
        post, metrics = self.train_world_model(batch)
        metrics.update(self.train_behavior(post, batch["is_terminal"]))
        self.updates += 1
        # One device sync for all metrics instead of one .item() each.
        values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
        return dict(zip(metrics, values))

    def train_world_model(self, batch: Batch) -> tuple[State, dict[str, torch.Tensor]]:
        """The first half of ``train``: one world-model step. Returns ``(post [B, L, ...]
        (detached), metrics as 0-dim tensors)``; ``updates`` is not advanced."""
        observed = self.world_model.observe(batch)
        wm_loss, metrics = self.world_model.loss(observed)
        metrics.update(self.model_opt.step(wm_loss, self.step))
        # Imagination starts from the detached posteriors: the actor-critic losses cannot
        # reach the representation through the start states.
        return {k: v.detach() for k, v in observed.post.items()}, metrics

    def train_behavior(self, post: State, is_terminal: Any) -> dict[str, torch.Tensor]:
        """The second half of ``train``: one actor-critic step imagined from ``post``
        ``[B, L, ...]`` with ``is_terminal [B, L]``: the actor's step, the critic's step, then
        the slow-critic refresh. Metrics as 0-dim tensors."""
        is_terminal = torch.as_tensor(is_terminal, device=self.device)
        with self._autocast():
            losses = self.behavior.losses(self.world_model, post, is_terminal, self.step)
            metrics = {**losses.metrics, **self.actor_opt.step(losses.actor, self.step),
                       **self.critic_opt.step(losses.critic, self.step)}
        self.behavior.update_slow_critic(self.updates)
        return metrics

    def report(self, batch: Batch) -> dict[str, np.ndarray]:
        """``{"openl": uint8 [T, 3·H, n·W, C]}``: truth, open-loop model, error; ``{}`` for a
        model without image observations (nothing to show)."""
        if "image" not in self.world_model.shapes:
            return {}
        return {"openl": self.world_model.openl_video(batch)}

    # -- checkpointing --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizers, slow critic and counter; loadable with ``weights_only=True``."""
        b = self.behavior
        return {
            "world_model": self.world_model.state_dict(),
            "actor": b.actor.state_dict(),
            "critic": b.critic.state_dict(),
            "slow_critic": b.slow_critic.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        b = self.behavior
        self.world_model.load_state_dict(state["world_model"])
        b.actor.load_state_dict(state["actor"])
        b.critic.load_state_dict(state["critic"])
        b.slow_critic.load_state_dict(state["slow_critic"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])
        self.step = int(state.get("step", 0))  # checkpoints before the agent step was saved: the loop sets it

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.config.precision)


def _can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile`` can build here: on the CPU it needs a C++ compiler. Without
    one, ``compile=true`` (the ``cartpole`` preset's default) warns once and runs uncompiled:
    the same numbers, slower."""
    if device.type != "cpu" or cpu_compiler() is not None:
        return True
    warnings.warn("compile=true: no C++ compiler found (torch.compile needs g++, or clang++ on macOS, or $CXX, "
                  "to build CPU kernels); running uncompiled. Install one for the compiled speed, or set "
                  "compile=false to silence this", stacklevel=3)
    return False


class _ActingCopy:
    """The encoder, RSSM and actor with the weights and biases of their linear and conv
    layers in bf16, for acting under bf16 autocast.

    Autocast casts those tensors to bf16 for every matmul anyway (and keeps everything else,
    such as LayerNorm, in fp32), so acting with this copy computes the same values while
    reading half the bytes and casting nothing per call (atari, batch 1, CPU: the recast of
    29 MB of fp32 weights was most of the call). The copy is refreshed in place whenever a
    source parameter changed (an optimizer step, a checkpoint load, any in-place write),
    detected through the parameters' version counters.
    """

    CAST = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)

    def __init__(self, agent: Agent):
        sources = (agent.world_model.encoder, agent.world_model.rssm, agent.behavior.actor)
        self.copies = tuple(copy.deepcopy(m).requires_grad_(False) for m in sources)
        for net in self.copies:
            for layer in net.modules():
                if isinstance(layer, self.CAST):
                    layer.to(torch.bfloat16)  # keeps the channels-last layout of conv weights
        self.pairs = [(src, dst) for s, d in zip(sources, self.copies, strict=True)
                      for src, dst in zip(s.parameters(), d.parameters(), strict=True)]
        self.key: list[tuple[int, int]] = []

    def modules(self) -> tuple[torch.nn.Module, ...]:
        key = [(src.data_ptr(), src._version) for src, _ in self.pairs]
        if key != self.key:
            with torch.no_grad():
                for src, dst in self.pairs:
                    dst.copy_(src)  # casts to bf16 where the copy holds bf16
            self.key = key
        return self.copies
