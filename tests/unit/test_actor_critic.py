"""Imagination weights, actor/critic losses and the slow critic, against a tiny fake world model."""

from types import SimpleNamespace

import pytest
import torch
from gymnasium import spaces
from torch import nn

from reverie.agent import build_optimizer
from reverie.behavior.actor_critic import (
    ActorCritic,
    actor_loss,
    critic_loss,
    critic_target,
    imagine,
    rollout,
)
from reverie.config import BehaviorConfig
from reverie.nn.distributions import Normal

FEAT = 6


class FakeRSSM(nn.Module):
    """Deterministic toy dynamics with the RSSM's imagination interface."""

    def __init__(self, act_size: int):
        super().__init__()
        self.cell = nn.Linear(FEAT + act_size, FEAT)

    def get_feat(self, state):
        return state["deter"]

    def img_step(self, state, action):
        return {"deter": torch.tanh(self.cell(torch.cat([state["deter"], action], -1)))}


class RewardHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(FEAT, 1)

    def forward(self, feat):
        return Normal(self.linear(feat).squeeze(-1), 1.0)


class FixedDiscount(nn.Module):
    """Discount head whose mean at imagined step t (1..H) is ``values[t - 1]``."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, feat):
        return SimpleNamespace(mean=self.values[:, None].expand(feat.shape[:2]))


class FakeWorldModel(nn.Module):
    def __init__(self, act_size: int, discount_head: nn.Module | None = None):
        super().__init__()
        self.rssm = FakeRSSM(act_size)
        self.heads = nn.ModuleDict({"reward": RewardHead()})
        if discount_head is not None:
            self.heads["discount"] = discount_head


def _setup(horizon=4, discount_head=None, act_space=None, **behavior):
    torch.manual_seed(0)
    act_space = act_space or spaces.Discrete(3)
    config = BehaviorConfig(horizon=horizon, **behavior)
    config.actor.layers = config.critic.layers = 1
    config.actor.units = config.critic.units = 8
    config.actor.dist = "auto"
    ac = ActorCritic(config, FEAT, act_space)
    wm = FakeWorldModel(ac.actor.act_size, discount_head)
    start = {"deter": torch.randn(2, 3, FEAT)}  # [B=2, L=3]
    is_terminal = torch.zeros(2, 3, dtype=torch.bool)
    return config, ac, wm, start, is_terminal


class Step:
    """One actor-critic training step as ``Agent.train_behavior`` does it: the two losses, an
    optimizer step each (the agent holds the optimizers), then the slow-critic refresh."""

    def __init__(self, ac):
        self.ac = ac
        self.actor_opt = build_optimizer("actor", ac.actor.parameters(), ac.config.actor_opt)
        self.critic_opt = build_optimizer("critic", ac.critic.parameters(), ac.config.critic_opt)

    def __call__(self, wm, start, is_terminal, step):
        losses = self.ac.losses(wm, start, is_terminal, step)
        metrics = {**losses.metrics, **self.actor_opt.step(losses.actor, step), **self.critic_opt.step(losses.critic, step)}
        self.ac.update_slow_critic(step)
        return metrics


def test_imagine_shapes_time_major():
    config, ac, wm, start, is_terminal = _setup(horizon=4)
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    assert traj["feat"].shape == (5, 6, FEAT)
    assert traj["action"].shape == (5, 6, 3)
    assert torch.all(traj["action"][0] == 0)
    assert torch.all(traj["action"][1:].sum(-1) == 1)  # one-hot samples
    for key in ("reward", "discount", "weight"):
        assert traj[key].shape == (5, 6)
    torch.testing.assert_close(traj["feat"][0], start["deter"].reshape(6, FEAT))


def test_weights_zero_after_a_zero_discount_and_first_discount_from_data():
    # The head predicts 0.5 at steps 1, 3, 4 and 0 at step 2; the start state's discount is
    # γ·(1 − is_terminal) from the data, not the head (which is only called on steps 1..H).
    head = FixedDiscount([0.5, 0.0, 0.5, 0.5])
    config, ac, wm, start, is_terminal = _setup(horizon=4, discount_head=head)
    is_terminal[0, 1] = True  # flat index 1
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    # discount column 0: [0.9, 0.5, 0, 0.5, 0.5]; weight = [1, 0.9, 0.9·0.5, 0, 0]
    torch.testing.assert_close(traj["discount"][:, 0], torch.tensor([0.9, 0.5, 0.0, 0.5, 0.5]))
    torch.testing.assert_close(traj["weight"][:, 0], torch.tensor([1.0, 0.9, 0.45, 0.0, 0.0]))
    # Terminal start state: discount[0] = 0, so only the start state itself has weight.
    torch.testing.assert_close(traj["discount"][0, 1], torch.tensor(0.0))
    torch.testing.assert_close(traj["weight"][:, 1], torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))


def test_without_discount_head_discount_is_gamma():
    config, ac, wm, start, is_terminal = _setup(horizon=3)
    traj = imagine(wm, ac.actor, start, is_terminal, 3, 0.9)
    torch.testing.assert_close(traj["discount"], torch.full((4, 6), 0.9))
    torch.testing.assert_close(traj["weight"][:, 0], torch.tensor([1.0, 0.9, 0.81, 0.729]))


def test_target_bootstraps_from_the_slow_critic():
    config, ac, wm, start, is_terminal = _setup(horizon=3)
    traj = imagine(wm, ac.actor, start, is_terminal, 3, 0.9)
    with torch.no_grad():
        ac.slow_critic.mlp.net[-1].bias.fill_(100.0)  # the critic itself is untouched
    target, value = critic_target(traj, ac.slow_critic, 0.95)
    assert target.shape == (3, 6)
    torch.testing.assert_close(value, ac.slow_critic(traj["feat"]).mean)
    torch.testing.assert_close(target[-1], traj["reward"][-2] + 0.9 * value[-1])


def test_lambda_zero_from_the_config_gives_the_one_step_td_target():
    # `behavior.return_lambda` accepts 0 on purpose: R_t = r_t + γ·d_t·v_{t+1}, every step
    # its own one-step target; discount 0 at step 2 cuts the bootstrap there.
    head = FixedDiscount([0.5, 0.0, 0.5])
    config, ac, wm, start, is_terminal = _setup(horizon=3, discount_head=head, return_lambda=0.0)
    traj = imagine(wm, ac.actor, start, is_terminal, 3, 0.9)
    target, value = critic_target(traj, ac.slow_critic, config.return_lambda)
    torch.testing.assert_close(target, traj["reward"][:-1] + traj["discount"][:-1] * value[1:])
    assert not torch.allclose(target, critic_target(traj, ac.slow_critic, 0.95)[0])  # λ changes the target


def test_entropy_term_is_eta_times_entropy_once():
    config, ac, wm, start, is_terminal = _setup(horizon=4)
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    target, value = critic_target(traj, ac.slow_critic, 0.95)
    target = target.detach()
    eta = 0.3
    for rho in (0.0, 0.5, 1.0):
        without, _ = actor_loss(ac.actor, traj, target, value, rho, 0.0)
        with_ent, metrics = actor_loss(ac.actor, traj, target, value, rho, eta)
        entropy = ac.actor(traj["feat"][:-2]).entropy()
        expected = -(traj["weight"][:-2] * eta * entropy).mean()
        torch.testing.assert_close(with_ent - without, expected)
        torch.testing.assert_close(metrics["actor_ent"], entropy.mean())


def test_actor_loss_rho_one_is_reinforce_with_slow_critic_baseline():
    config, ac, wm, start, is_terminal = _setup(horizon=4)
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    target, value = critic_target(traj, ac.slow_critic, 0.95)
    target = target.detach()
    loss, metrics = actor_loss(ac.actor, traj, target, value, 1.0, 0.0)
    policy = ac.actor(traj["feat"][:-2])
    advantage = target[1:] - ac.slow_critic(traj["feat"][:-2]).mean
    reinforce = policy.log_prob(traj["action"][1:-1]) * advantage
    torch.testing.assert_close(loss, -(traj["weight"][:-2] * reinforce).mean())
    assert float(metrics["actor_dynamics"]) == 0.0  # not built at ρ = 1


def test_critic_loss_is_weighted_gaussian_nll_on_detached_features():
    config, ac, wm, start, is_terminal = _setup(horizon=4)
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    target, _ = critic_target(traj, ac.slow_critic, 0.95)
    loss, metrics = critic_loss(ac.critic, traj, target)
    mean = ac.critic(traj["feat"][:-1]).mean
    nll = 0.5 * (target - mean) ** 2 + 0.5 * torch.log(torch.tensor(2 * torch.pi))
    torch.testing.assert_close(loss, (nll * traj["weight"][:-1]).mean())
    loss.backward()
    assert all(p.grad is None for p in ac.actor.parameters())
    assert all(p.grad is None for p in wm.parameters())
    assert all(p.grad is not None for p in ac.critic.parameters())


def test_slow_critic_equals_critic_at_each_interval_and_differs_between():
    config, ac, wm, start, is_terminal = _setup(horizon=3, slow_critic_every=2)
    update = Step(ac)
    for step in range(5):
        update(wm, start, is_terminal, step)
        same = all(torch.equal(s, c) for s, c in zip(ac.slow_critic.parameters(), ac.critic.parameters()))
        assert same == (step % 2 == 0), step
    assert all(p.grad is None and not p.requires_grad for p in ac.slow_critic.parameters())


def test_slow_critic_fraction_mixes_after_the_first_copy():
    config, ac, wm, start, is_terminal = _setup(horizon=3, slow_critic_every=1, slow_critic_fraction=0.25)
    update = Step(ac)
    update(wm, start, is_terminal, 0)
    old = [p.clone() for p in ac.slow_critic.parameters()]
    update(wm, start, is_terminal, 1)
    for slow, fast, before in zip(ac.slow_critic.parameters(), ac.critic.parameters(), old):
        torch.testing.assert_close(slow, 0.25 * fast + 0.75 * before)


@pytest.mark.parametrize("rho", [0.0, 1.0])
def test_update_continuous_actor_trains_and_leaves_world_model_alone(rho):
    box = spaces.Box(-1.0, 1.0, (2,))
    head = FixedDiscount([0.9] * 3)
    config, ac, wm, start, is_terminal = _setup(horizon=3, discount_head=head, act_space=box, reinforce_mix=rho)
    assert not ac.actor.discrete
    before = [p.clone() for p in wm.parameters()]
    actor_before = [p.clone() for p in ac.actor.parameters()]
    metrics = Step(ac)(wm, start, is_terminal, 0)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert all(torch.equal(p, b) and p.grad is None for p, b in zip(wm.parameters(), before))
    assert any(not torch.equal(p, b) for p, b in zip(ac.actor.parameters(), actor_before))
    assert all(p.requires_grad for p in wm.parameters())  # unfrozen again afterwards


def test_schedules_are_evaluated_at_the_step():
    config, ac, wm, start, is_terminal = _setup(reinforce_mix="linear(1,0,10)", entropy="linear(0,1,10)")
    assert ac.reinforce_mix(5) == 0.5 and ac.entropy_scale(5) == 0.5


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_actor_runs_once_per_imagined_step_and_the_loss_reuses_its_outputs(rho):
    config, ac, wm, start, is_terminal = _setup(horizon=4, reinforce_mix=rho)
    traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9)
    # The rollout's outputs at states 0..H−1 are the actor's outputs there, with their graph.
    torch.testing.assert_close(traj["actor_out"], ac.actor.mlp(traj["feat"][:-1]).detach())
    calls = []
    ac.actor.mlp.register_forward_hook(lambda module, inp, out: calls.append(tuple(inp[0].shape)))
    loss_a, _, _ = ac.losses(wm, start, is_terminal, step=0)
    assert calls == [(6, FEAT)] * 4  # H calls on the N = 6 start states, none in the loss
    loss_a.backward()
    assert all(p.grad is not None for p in ac.actor.parameters())


def test_a_compiled_rollout_leaves_the_actor_outputs_to_one_call_after_it():
    # compile=true compiles `rollout` without the actor's graph (ρ = 1); the loss's outputs
    # then come from one call on the detached states, with their graph. The eager function
    # stands in for the compiled one here (the slow test_precision test compiles it).
    config, ac, wm, start, is_terminal = _setup(horizon=4, reinforce_mix=1.0)
    calls = []
    ac.actor.mlp.register_forward_hook(lambda module, inp, out: calls.append(tuple(inp[0].shape)))
    with torch.no_grad():
        traj = imagine(wm, ac.actor, start, is_terminal, 4, 0.9, compiled=rollout)
    assert calls == [(6, FEAT)] * 4 + [(4, 6, FEAT)]
    assert traj["actor_out"].requires_grad and not traj["feat"].requires_grad
    torch.testing.assert_close(traj["actor_out"], ac.actor.mlp(traj["feat"][:-1]).detach())
