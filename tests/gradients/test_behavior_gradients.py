"""Which parameters the world-model, actor and critic losses reach, on the real networks.

The actor-critic losses are built exactly as ``Agent.train`` builds them
(``ActorCritic.losses`` on the detached posteriors of ``WorldModel.loss``); each loss is
back-propagated alone and the parameter groups holding a non-zero gradient are listed.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie.agent import Agent
from reverie.config import load_config

B, L, ACTIONS = 2, 6, 3
OBS_SPACE = {"image": gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)}


def make_agent(*overrides):
    config = load_config("debug", ["device=cpu", "behavior.horizon=4", *overrides])
    torch.manual_seed(0)
    return Agent(config, OBS_SPACE, gym.spaces.Discrete(ACTIONS))


def random_batch(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (B, L, 64, 64, 1), dtype=np.uint8),
            "action": np.eye(ACTIONS, dtype=np.float32)[rng.integers(0, ACTIONS, (B, L))],
            "reward": rng.normal(size=(B, L)).astype(np.float32),
            "is_first": np.eye(1, L, dtype=bool).repeat(B, 0),
            "is_last": np.zeros((B, L), bool), "is_terminal": rng.random((B, L)) < 0.2}


def groups(agent):
    b = agent.behavior
    return {"world_model": agent.world_model, "actor": b.actor, "critic": b.critic, "slow_critic": b.slow_critic}


def reached(agent):
    """Groups with a non-zero gradient; then clears every gradient."""
    names = {name for name, module in groups(agent).items()
             if any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())}
    for module in groups(agent).values():
        module.zero_grad(set_to_none=True)
    return names


def behavior_losses(agent, step=0):
    batch = random_batch()
    post = agent.world_model.observe(batch).post
    start = {k: v.detach() for k, v in post.items()}
    is_terminal = torch.as_tensor(batch["is_terminal"])
    return agent.behavior.losses(agent.world_model, start, is_terminal, step)


def test_world_model_loss_reaches_no_actor_or_critic_parameter():
    agent = make_agent()
    loss, _ = agent.world_model.loss(agent.world_model.observe(random_batch()))
    loss.backward()
    assert reached(agent) == {"world_model"}


@pytest.mark.parametrize("rho", [1.0, 0.5, 0.0])
def test_actor_loss_reaches_only_the_actor_and_critic_loss_only_the_critic(rho):
    agent = make_agent(f"behavior.reinforce_mix={rho}")
    actor_loss, critic_loss, _ = behavior_losses(agent)
    actor_loss.backward()
    assert reached(agent) == {"actor"}
    critic_loss.backward()
    assert reached(agent) == {"critic"}


def _imagined_rewards_require_grad(agent):
    """Whether the reward head's output in imagination (its last call; the first is the
    world-model loss) carries a graph, i.e. whether anything is differentiated through the dynamics."""
    seen = []
    hook = agent.world_model.heads["reward"].register_forward_hook(lambda m, i, out: seen.append(out.mean.requires_grad))
    try:
        behavior_losses(agent)
    finally:
        hook.remove()
    return seen[-1]


def test_rho_one_builds_no_graph_through_the_dynamics():
    assert _imagined_rewards_require_grad(make_agent("behavior.reinforce_mix=1.0")) is False


def test_rho_zero_backpropagates_through_imagination_into_the_actions():
    # η = 0 and ρ = 0: the only path from the loss to the actor runs through the world
    # model's imagination (action → img_step → features → reward/value heads).
    agent = make_agent("behavior.reinforce_mix=0.0", "behavior.entropy=0.0")
    assert _imagined_rewards_require_grad(agent) is True
    actor_loss, _, _ = behavior_losses(agent)
    actor_loss.backward()
    assert reached(agent) == {"actor"}
    # The frozen world model computed no parameter gradients and is trainable again.
    assert all(p.requires_grad for p in agent.world_model.parameters())


@pytest.mark.parametrize("rho", [1.0, 0.0])
def test_actor_critic_update_does_not_change_the_world_model(rho):
    agent = make_agent(f"behavior.reinforce_mix={rho}")
    batch = random_batch()
    post = agent.world_model.observe(batch).post
    before = {k: v.clone() for k, v in agent.world_model.state_dict().items()}
    slow_before = [p.clone() for p in agent.behavior.slow_critic.parameters()]
    start = {k: v.detach() for k, v in post.items()}
    agent.updates = 1
    agent.train_behavior(start, batch["is_terminal"])
    assert all(torch.equal(v, before[k]) for k, v in agent.world_model.state_dict().items())
    assert all(p.grad is None for p in agent.world_model.parameters())
    # Step 1 is not a refresh step: the slow critic is untouched too.
    assert all(torch.equal(p, b) for p, b in zip(agent.behavior.slow_critic.parameters(), slow_before))


def test_slow_critic_never_receives_gradients():
    agent = make_agent("behavior.reinforce_mix=0.5")
    for step in range(2):
        agent.train(random_batch(step))
    assert all(not p.requires_grad and p.grad is None for p in agent.behavior.slow_critic.parameters())
