"""Trainable parameter counts per module (``reverie config --params``).

The paper reports ~20M world-model parameters and ~1M each for actor and critic (section 2).
"""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
from torch import nn

from reverie.behavior.actor_critic import Actor, Critic
from reverie.config import Config

ORDER = ("encoder", "rssm", "decoder", "reward", "discount", "actor", "critic", "total")


def default_spaces() -> tuple[dict[str, gymnasium.spaces.Box], gymnasium.spaces.Discrete]:
    """Atari: a 64×64 grayscale image and the 18 actions of the full action space."""
    return {"image": gymnasium.spaces.Box(0, 255, (64, 64, 1), np.uint8)}, gymnasium.spaces.Discrete(18)


def parameter_counts(
    config: Config,
    obs_space: dict[str, gymnasium.spaces.Box] | None = None,
    act_space: gymnasium.Space | None = None,
) -> dict[str, int]:
    """``{encoder, rssm, decoder, reward, discount, actor, critic, total}`` → number of
    trainable parameters (``discount`` is 0 without a discount head). The slow critic, a
    copy of the critic, is not counted. Builds the networks on the CPU."""
    from reverie.world_model.model import WorldModel

    default_obs, default_act = default_spaces()
    obs_space, act_space = obs_space or default_obs, act_space or default_act
    wm = WorldModel(dataclasses.replace(config, device="cpu"), obs_space, act_space)
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
