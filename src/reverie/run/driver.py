"""Steps one environment with the agent's policy, one agent step at a time.

The paper uses one environment per agent. The policy state (latent, previous action)
carries across steps; at an episode start the observation's ``is_first`` makes the RSSM
reset both to the initial state (inside ``rssm.post_step``), so no special case is needed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reverie.runtime import acting_threads


@dataclass
class Episode:
    ret: float = 0.0
    length: int = 0


class Driver:
    """Keeps the current observation, the policy state and the running episode's totals."""

    def __init__(self, env, agent):
        from reverie.envs import action_dim

        self.env = env
        self.action_width = action_dim(env.act_space)
        self.agent = agent
        self.obs: dict[str, Any] | None = None
        self.policy_state = None
        self.episode = Episode()

    def reset(self) -> dict[str, Any]:
        """Start an episode; returns the first step (with a zero action) for the replay."""
        self.obs = self.env.reset()
        self.episode = Episode()
        return {**self.obs, "action": np.zeros(self.action_width, np.float32)}

    def step(self, mode: str) -> tuple[dict[str, Any], Episode | None]:
        """One agent step. Returns the new step (observation + the action that led to it)
        and, when the episode ended, its totals."""
        with acting_threads(self.agent.device):
            action, self.policy_state = self.agent.policy(batch_obs(self.obs), self.policy_state, mode)
        action = action[0]
        self.obs = self.env.step(action)
        self.episode.ret += float(self.obs["reward"])
        self.episode.length += 1
        transition = {**self.obs, "action": np.asarray(action, np.float32)}
        if self.obs["is_last"]:
            finished, self.obs = self.episode, None
            return transition, finished
        return transition, None


def batch_obs(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Add a leading batch dimension of 1 to every observation entry."""
    return {k: np.asarray(v)[None] for k, v in obs.items()}
