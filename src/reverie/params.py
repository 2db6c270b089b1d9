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
from reverie.world_model.model import WorldModel

ORDER = ("encoder", "rssm", "decoder", "reward", "discount", "actor", "critic", "total")


def default_spaces(config: Config) -> tuple[dict[str, gymnasium.spaces.Box], gymnasium.Space]:
    """The image the config's ``env`` produces (Atari: 64×64×1) and 18 discrete actions
    (the full Atari action space), or a 6-dim box (walker) for a truncated-normal actor."""
    channels = 1 if config.env.grayscale else 3
    image = gymnasium.spaces.Box(0, 255, (*config.env.size, channels), np.uint8)
    continuous = config.behavior.actor.dist == "trunc_normal"
    act_space = gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32) if continuous else gymnasium.spaces.Discrete(18)
    return {"image": image}, act_space


def parameter_counts(
    config: Config,
    obs_space: dict[str, gymnasium.spaces.Box] | None = None,
    act_space: gymnasium.Space | None = None,
) -> dict[str, int]:
    """``{encoder, rssm, decoder, reward, discount, actor, critic, total}`` → number of
    trainable parameters (``discount`` is 0 without a discount head). The slow critic, a
    copy of the critic, is not counted. Spaces default to ``default_spaces(config)``.
    Builds the networks on the CPU."""
    default_obs, default_act = default_spaces(config)
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
