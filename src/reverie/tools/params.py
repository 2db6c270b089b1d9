"""Trainable parameter counts per module (``reverie config --params``).

The paper reports ~20M world-model parameters and ~1M each for actor and critic (section 2).
"""

from __future__ import annotations

import dataclasses

import gymnasium
from torch import nn

from reverie.agent import build_world_model
from reverie.behavior.actor_critic import Actor, Critic
from reverie.config import Config

ORDER = ("encoder", "rssm", "decoder", "reward", "discount", "actor", "critic", "total")


def task_spaces(config: Config, task: str | None = None) -> tuple[dict[str, gymnasium.spaces.Box], gymnasium.Space]:
    """The observation and action spaces of ``task`` (default ``config.task``) under the
    config's ``env`` settings, read from the environment itself: ``gym_CartPole-v1`` gives
    ``vector [4]`` and ``Discrete(2)``, ``dmc_humanoid_walk`` a 21-dim box. A task of a suite
    that is not installed raises ``TaskError`` naming the extra to install."""
    from reverie.envs import make_env

    env = make_env(config if task is None else dataclasses.replace(config, task=task), "train")
    try:
        return dict(env.obs_space), env.act_space
    finally:
        env.close()


def parameter_counts(
    config: Config,
    obs_space: dict[str, gymnasium.spaces.Box] | None = None,
    act_space: gymnasium.Space | None = None,
) -> dict[str, int]:
    """``{encoder, rssm, decoder, reward, discount, actor, critic, total}`` → number of
    trainable parameters (``discount`` is 0 without a discount head). The slow critic, a
    copy of the critic, is not counted. Spaces default to those of the config's task
    (``task_spaces``). Builds the networks on the CPU."""
    if obs_space is None or act_space is None:
        obs_space, act_space = task_spaces(config)
    wm = build_world_model(config, obs_space, act_space, device="cpu")
    feat = wm.rssm.feat_dim
    heads = wm.heads
    counts = {
        "encoder": _count(wm.encoder),
        "rssm": _count(wm.rssm),
        "decoder": _count(heads["decoder"]),
        "reward": _count(heads["reward"]),
        "discount": _count(heads["discount"]) if "discount" in heads else 0,
        "actor": _count(Actor(feat, act_space, config.behavior.actor)),
        "critic": _count(Critic(feat, config.behavior.critic)),
    }
    # Count the whole world model (not the sum of the parts) so nothing is missed.
    counts["total"] = _count(wm) + counts["actor"] + counts["critic"]
    return counts


def format_counts(counts: dict[str, int]) -> str:
    """One aligned line per module, e.g. ``encoder      1.19M  (1,185,432)``."""
    names = [n for n in ORDER if n in counts] + [n for n in counts if n not in ORDER]
    width = max(map(len, names))
    return "\n".join(f"{n:<{width}}  {counts[n] / 1e6:7.2f}M  ({counts[n]:,})" for n in names)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
