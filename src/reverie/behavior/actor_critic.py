"""Actor, critic, slow critic, imagination and their losses (section 2.2, Equations 4–6).

Time-major throughout: ``[T, N, ...]`` with N = B·L imagined start states and T = H + 1
imagined states (the start state plus H imagined steps). Index conventions follow the
official TF2 code (danijar/dreamerv2, ``agent.py``): ``action[t]`` is the action that *led
to* state t (``action[0]`` is zeros), and ``reward[t]``/``discount[t]`` are predicted from
state t (the paper's r̂_t ~ p(r̂_t | ẑ_t)), the same alignment as the replay buffer.

Gradient routing (the usual PyTorch pitfall): the world model's parameters are frozen
(``requires_grad_(False)``) while the actor-critic loss is built, so the dynamics-backprop
term (ρ < 1) carries gradients *through* the world model into the actions without leaving
``.grad`` on world-model parameters; the critic sees detached features; the slow critic
is never trainable.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from gymnasium import spaces
from torch import nn

from reverie.behavior.returns import lambda_return
from reverie.config import ActorConfig, BehaviorConfig, CriticConfig
from reverie.contracts import State, Trajectory
from reverie.errors import ConfigError
from reverie.nn.distributions import Normal, OneHotDist, TruncNormalDist
from reverie.nn.layers import MLP
from reverie.schedules import parse_schedule


class BehaviorLosses(NamedTuple):
    """The two losses of one actor-critic step (disjoint graphs: the actor's reaches only the
    actor, the critic's only the critic) and their metrics (detached 0-dim tensors)."""

    actor: torch.Tensor
    critic: torch.Tensor
    metrics: dict[str, torch.Tensor]


class Actor(nn.Module):
    """π(a_t | ẑ_t): MLP(feat ``[..., F]``) → one-hot categorical or truncated normal in [−1, 1].

    ``dist="auto"`` picks one-hot for ``Discrete`` and truncated normal for ``Box`` actions.
    Continuous: ``mean = tanh(x)``, ``std = 2·sigmoid(y/2) + min_std`` (official code).
    """

    def __init__(self, feat_size: int, act_space: spaces.Discrete | spaces.Box, config: ActorConfig):
        super().__init__()
        dist = config.dist
        if dist == "auto":
            dist = "onehot" if isinstance(act_space, spaces.Discrete) else "trunc_normal"
        if dist == "onehot" and not isinstance(act_space, spaces.Discrete):
            raise ConfigError(f"behavior.actor.dist=onehot needs a Discrete action space, got {act_space}; use auto")
        if dist == "trunc_normal" and not isinstance(act_space, spaces.Box):
            raise ConfigError(f"behavior.actor.dist=trunc_normal needs a Box action space, got {act_space}; use auto")
        self.discrete = dist == "onehot"
        self.act_size = int(act_space.n) if self.discrete else int(act_space.shape[0])
        self.min_std = config.min_std
        out = self.act_size if self.discrete else 2 * self.act_size
        self.mlp = MLP(feat_size, out, config.layers, config.units)

    def forward(self, feat: torch.Tensor) -> OneHotDist | TruncNormalDist:
        return self.dist(self.mlp(feat))

    def dist(self, x: torch.Tensor) -> OneHotDist | TruncNormalDist:
        """The distribution of the MLP's output ``x [..., out]`` (``forward = dist ∘ mlp``)."""
        x = x.float()  # distributions in fp32 even under bf16 autocast
        if self.discrete:
            return OneHotDist(logits=x)
        mean, std = x.chunk(2, -1)
        return TruncNormalDist(torch.tanh(mean), 2 * torch.sigmoid(std / 2) + self.min_std, -1.0, 1.0)


class Critic(nn.Module):
    """v_ξ(ẑ_t): MLP(feat ``[..., F]``) → Normal(mean ``[...]``, 1) (log-likelihood = squared loss, Eq. 5)."""

    def __init__(self, feat_size: int, config: CriticConfig):
        super().__init__()
        self.mlp = MLP(feat_size, 1, config.layers, config.units)

    def forward(self, feat: torch.Tensor) -> Normal:
        return Normal(self.mlp(feat).float().squeeze(-1), 1.0)


def sample_with_grad(dist: OneHotDist | TruncNormalDist) -> torch.Tensor:
    """A sample that gradients can flow through: straight-through one-hot, reparameterised normal."""
    return dist.rsample() if isinstance(dist, TruncNormalDist) else dist.sample()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` compute no ``.grad`` inside; activations still carry gradients."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def rollout(rssm: nn.Module, actor: Actor, state: State, horizon: int,
            actor_outputs: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The prior rolled ``horizon`` steps from ``state`` (``[N, ...]``) with actions sampled
    from the actor: features ``[T, N, F]``, actions ``[T, N, A]`` (``action[0]`` zeros), T =
    horizon + 1, and with ``actor_outputs`` the actor's outputs ``[T − 1, N, out]`` with their
    graph to the actor's parameters (built even when the rollout itself runs without
    gradients), so that ``actor_loss`` does not run the actor again on the same states.

    Under gradients (ρ < 1) the samples carry them into the dynamics; without (ρ = 1) nothing
    but the actor's outputs records a graph. With neither gradients nor ``actor_outputs`` it is
    a function of the state, the weights and the random stream only, which ``compile=true``
    compiles whole (``ActorCritic.compile_rollout``)."""
    feat = rssm.get_feat(state)
    feats, actions = [feat], [torch.zeros(feat.shape[0], actor.act_size, device=feat.device)]
    outs = []
    grad = torch.is_grad_enabled()
    for _ in range(horizon):
        # The actor sees stop_grad(feat): its own gradient comes only through the action.
        with torch.enable_grad() if actor_outputs else contextlib.nullcontext():
            outs.append(actor.mlp(feats[-1].detach()))
        # Without gradients for the rollout the draw records no graph.
        action = sample_with_grad(actor.dist(outs[-1] if grad else outs[-1].detach()))
        state = rssm.img_step(state, action)
        feats.append(rssm.get_feat(state))
        actions.append(action)
    if not actor_outputs:
        return torch.stack(feats, 0), torch.stack(actions, 0), None
    with torch.enable_grad():  # the stack keeps the outputs' graph
        return torch.stack(feats, 0), torch.stack(actions, 0), torch.stack(outs, 0)


def imagine(
    world_model: nn.Module,
    actor: Actor,
    start: dict[str, torch.Tensor],
    is_terminal: torch.Tensor,
    horizon: int,
    discount: float,
    compiled: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = None,
) -> Trajectory:
    """Roll the prior ``horizon`` steps from every posterior state, actions from the actor.

    ``start``: RSSM state dict of ``[B, L, ...]`` tensors (detached here); ``is_terminal``:
    ``[B, L]``. Returns time-major tensors for T = horizon + 1 states:
    ``feat`` ``[T, N, F]``, ``action`` ``[T, N, A]`` (``action[0]`` zeros), ``reward``,
    ``discount``, ``weight`` ``[T, N]``, and ``actor_out`` ``[T − 1, N, out]``: the actor
    network's raw outputs at states 0..H−1, with their graph to the actor's parameters, for
    ``actor_loss`` (``rollout``). ``compiled``: a compiled ``rollout`` used without gradients
    (ρ = 1) with ``actor_outputs=False``; the outputs are then computed after it in one call on
    the detached features, as the official code does (uncompiled that is slower: 110–122 vs
    123–127 ms per minatar update on one thread, docs/SPEED.md).

    ``discount[0]`` is the true γ·(1 − is_terminal) of the start state (a real state with
    a known label), later ones the discount head's mean (it already predicts γ·(1 −
    terminal)), or γ without a discount head. (Without the head the official code uses γ
    at the start too; the two agree unless a task has terminals but no discount head.) ``weight[t] = Π_{k<t} discount[k]`` (so
    ``weight[0] = 1``), under stop_grad: the actor and critic losses count each imagined
    state by its probability of being reached (section 2.2).
    """
    state = {k: v.detach().reshape(-1, *v.shape[2:]) for k, v in start.items()}
    if compiled is None or torch.is_grad_enabled():
        feat, action, actor_out = rollout(world_model.rssm, actor, state, horizon)
    else:
        feat, action, _ = compiled(world_model.rssm, actor, state, horizon, actor_outputs=False)
        with torch.enable_grad():
            actor_out = actor.mlp(feat[:-1].detach())
    reward, disc, weight = _predict(world_model, feat, is_terminal, discount)
    return Trajectory(feat=feat, action=action, reward=reward, discount=disc, weight=weight, actor_out=actor_out)


def _predict(world_model: nn.Module, feat: torch.Tensor, is_terminal: torch.Tensor,
             discount: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reward, discount and weight ``[T, N]`` of imagined features (see ``imagine``)."""
    reward = world_model.heads["reward"](feat).mean.float()
    first = discount * (1.0 - is_terminal.reshape(1, -1).float())
    if "discount" in world_model.heads:
        disc = torch.cat([first, world_model.heads["discount"](feat[1:]).mean.float()], 0)
    else:
        disc = torch.cat([first, torch.full_like(reward[1:], discount)], 0)
    weight = torch.cumprod(torch.cat([torch.ones_like(disc[:1]), disc[:-1]], 0), 0).detach()
    return reward, disc, weight


def critic_target(traj: Trajectory, slow_critic: Critic, lambda_: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target [T − 1, N], value [T, N])``: λ-targets (Eq. 4) from the slow critic's values,
    bootstrapped at the last state; ``value`` is returned for the Reinforce baseline."""
    value = slow_critic(traj["feat"]).mean
    return lambda_return(traj["reward"][:-1], value[:-1], traj["discount"][:-1], value[-1], lambda_), value


def actor_loss(
    actor: Actor,
    traj: Trajectory,
    target: torch.Tensor,
    value: torch.Tensor,
    reinforce_mix: float,
    entropy_scale: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Equation 6: −ρ·ln π(a|ẑ)·sg(V^λ − v) − (1 − ρ)·V^λ − η·H[π], weighted by ``weight``.

    Index offsets as in the official code: ``action[t + 1]`` was sampled from the policy at
    state t, so the policy at ``feat[:-2]`` scores ``action[1:-1]`` and is credited with
    ``target[1:]`` (whose first reward is the one that action earned); the baseline is
    ``value[:-2]`` (``value``: the slow critic's ``[T, N]``), the value of that same state t.
    Only terms with non-zero weight are built, so ρ = 1 needs no graph through the
    dynamics. Metrics ``actor_reinforce``/``actor_dynamics`` are the means of the two
    objectives (0 where that term is not built). The policy at states 0..H−2 is the
    rollout's (``traj["actor_out"]``, the same function of the same detached features).
    """
    policy = actor.dist(traj["actor_out"][:-1])
    zero = target.new_zeros(())
    reinforce = dynamics = zero
    objective = torch.zeros_like(target[1:])
    if reinforce_mix > 0:
        advantage = (target[1:] - value[:-2]).detach()
        reinforce = policy.log_prob(traj["action"][1:-1].detach()) * advantage
        objective = objective + reinforce_mix * reinforce
    if reinforce_mix < 1:
        dynamics = target[1:]
        objective = objective + (1 - reinforce_mix) * dynamics
    entropy = policy.entropy()
    objective = objective + entropy_scale * entropy  # counted once, whatever ρ is
    loss = -(traj["weight"][:-2] * objective).mean()
    metrics = {
        "actor_loss": loss.detach(),
        "actor_ent": entropy.detach().mean(),
        "actor_reinforce": reinforce.detach().mean(),
        "actor_dynamics": dynamics.detach().mean(),
    }
    return loss, metrics


def critic_loss(critic: Critic, traj: Trajectory, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Equation 5 as a log-likelihood: −weight·ln N(sg(V^λ); v_ξ(sg(ẑ_t)), 1), states 0..H−1.

    There is no term for the last state: its target is the bootstrap value itself.
    """
    dist = critic(traj["feat"][:-1].detach())
    loss = -(dist.log_prob(target.detach()) * traj["weight"][:-1]).mean()
    return loss, {"critic_loss": loss.detach(), "critic_mean": dist.mean.detach().mean()}


class ActorCritic(nn.Module):
    """Actor, critic and slow critic; ``losses`` builds one training step's two losses (the
    agent holds the optimizers, all three in one place) and ``update_slow_critic`` refreshes
    the slow critic after the critic's step.

    The slow critic (the paper's target network) gives the λ-targets and the Reinforce
    baseline. It is refreshed from the critic every ``slow_critic_every`` updates, mixing
    ``slow_critic_fraction`` (a full copy on the first update), as in the official code.
    """

    def __init__(
        self,
        config: BehaviorConfig,
        feat_size: int,
        act_space: spaces.Discrete | spaces.Box,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        self.config = config
        self.actor = Actor(feat_size, act_space, config.actor)
        self.critic = Critic(feat_size, config.critic)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.to(device)
        self.compiled_rollout = None  # the imagination without gradients (ρ = 1), set by compile_rollout
        self.reinforce_mix = parse_schedule(config.reinforce_mix)
        self.entropy_scale = parse_schedule(config.entropy)

    def losses(self, world_model: nn.Module, start: State, is_terminal: torch.Tensor, step: int) -> BehaviorLosses:
        """The actor's and the critic's loss from the posterior states ``start`` ``[B, L, ...]``
        imagined forward. Schedules (ρ, η) are evaluated at ``step``.
        """
        rho, eta = self.reinforce_mix(step), self.entropy_scale(step)
        # With ρ = 1 nothing differentiates through the imagined trajectory: skip its graph.
        with frozen(world_model), torch.set_grad_enabled(rho < 1):
            traj = imagine(world_model, self.actor, start, is_terminal, self.config.horizon, self.config.discount,
                           self.compiled_rollout)
            target, value = critic_target(traj, self.slow_critic, self.config.return_lambda)
        actor_objective, metrics = actor_loss(self.actor, traj, target, value, rho, eta)
        critic_objective, critic_metrics = critic_loss(self.critic, traj, target)
        metrics.update(critic_metrics, return_mean=target.detach().mean())
        return BehaviorLosses(actor_objective, critic_objective, metrics)

    def compile_rollout(self) -> None:
        """``torch.compile`` the imagination without gradients whole: one graph for the H
        steps (gym,cartpole, 2 threads: 11 ms faster per update, docs/SPEED.md). Compiled code
        draws its random numbers differently from eager code (same distributions)."""
        self.compiled_rollout = torch.compile(rollout, fullgraph=True, dynamic=False)

    @torch.no_grad()
    def update_slow_critic(self, step: int) -> None:
        """Every ``slow_critic_every`` updates, mix ``slow_critic_fraction`` of the critic into
        the slow critic (a full copy at step 0), as in the official code."""
        if step % self.config.slow_critic_every == 0:
            mix = 1.0 if step == 0 else self.config.slow_critic_fraction
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
                slow.lerp_(fast, mix)
