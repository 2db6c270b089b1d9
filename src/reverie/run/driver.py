"""Steps one environment with the agent's policy, one agent step at a time.

The paper uses one environment per agent. The policy state (latent, previous action)
carries across steps; at an episode start the observation's ``is_first`` makes the RSSM
reset both to the initial state (inside ``rssm.post_step``), so no special case is needed here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from reverie.runtime import acting_threads

if TYPE_CHECKING:
    from reverie.contracts import AgentContract, PolicyState
    from reverie.envs import Env


@dataclasses.dataclass
class Episode:
    """The totals of one episode: ``score``, its undiscounted return (the sum of raw rewards,
    logged as ``episode/return``), and ``length`` in agent steps."""

    score: float = 0.0
    length: int = 0


class Driver:
    """Keeps the current observation, the policy state and the running episode's totals, and
    owns them (with the env's state) through ``state_dict``/``load_state_dict``."""

    def __init__(self, env: Env, agent: AgentContract, name: str = ""):
        from reverie.envs import action_dim

        self.env, self.name = env, name or type(env).__name__
        self.action_width = action_dim(env.act_space)
        self.agent = agent
        self.obs: dict[str, Any] | None = None
        self.policy_state: PolicyState | None = None
        self.episode = Episode()

    def reset(self) -> dict[str, Any]:
        """Start an episode; returns the first step (with a zero action) for the replay."""
        self.obs = self._checked(self.env.reset(), "at reset")
        self.episode = Episode()
        return {**self.obs, "action": np.zeros(self.action_width, np.float32)}

    def step(self, mode: str) -> tuple[dict[str, Any], Episode | None]:
        """One agent step. Returns the new step (observation + the action that led to it)
        and, when the episode ended, its totals."""
        with acting_threads(self.agent.device):
            action, self.policy_state = self.agent.policy(batch_obs(self.obs), self.policy_state, mode)
        action = action[0]
        self.obs = self._checked(self.env.step(action), f"at step {self.episode.length + 1} of an episode")
        self.episode.score += float(self.obs["reward"])
        self.episode.length += 1
        transition = {**self.obs, "action": np.asarray(action, np.float32)}
        if self.obs["is_last"]:
            finished, self.obs = self.episode, None
            return transition, finished
        return transition, None

    def state_dict(self) -> dict[str, Any]:
        """Inside an episode: the env's whole state (``get_state``), the current observation,
        the policy state and the running episode. At an episode end (no current observation):
        what the env's next reset draws from (``get_reset_state``), so a resumed run's next
        episode is the uninterrupted run's, not episode 1 again."""
        mid_episode = self.obs is not None
        return {"env": self.env.get_state() if mid_episode else self.env.get_reset_state(), "obs": self.obs,
                "policy_state": self.policy_state, "episode": dataclasses.asdict(self.episode),
                "mid_episode": mid_episode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``; the policy state's tensors must be on the agent's device
        (``load_checkpoint(..., map_location=agent.device)`` puts them there)."""
        env_state = state["env"]
        if state["mid_episode"] and env_state is not None:  # the env continues its episode exactly
            self.env.set_state(env_state)
            self.obs, self.policy_state = state["obs"], state["policy_state"]
            self.episode = Episode(**state["episode"])
        elif state["mid_episode"]:  # the env cannot restore its state: a new episode starts (documented)
            self.obs = None
        elif env_state is not None:  # between episodes: the next reset continues the env's random streams
            self.env.set_reset_state(env_state)

    def _checked(self, obs: dict[str, Any], when: str) -> dict[str, Any]:
        """Refuse a NaN or infinite reward or observation: the world model would learn from it
        and the replay would keep it, so it stops the run naming the env (no silent training)."""
        for key, value in obs.items():
            array = np.asarray(value)
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                from reverie.errors import TaskError

                raise TaskError(f"env {self.name} returned a non-finite {key} ({_first_bad(array)}) {when}; fix the "
                                "environment (or wrap it to clip or replace such values): Reverie does not train "
                                "on NaN or inf")
        return obs


def _first_bad(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    return repr(float(flat[~np.isfinite(flat)][0]))


def batch_obs(obs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Add a leading batch dimension of 1 to every observation entry."""
    return {k: np.asarray(v)[None] for k, v in obs.items()}
