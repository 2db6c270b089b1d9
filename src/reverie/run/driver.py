"""Steps N environments with the agent's policy: one batched policy call per round.

The paper uses one environment per agent; the official code steps ``envs`` of them, each
round one policy call for all (``common/driver.py``). The policy state (latent, previous
action) is one batch over the envs and carries across rounds; at an episode start the
observation's ``is_first`` makes the RSSM reset that env's row to the initial state (inside
``rssm.post_step``), so an env that starts an episode never disturbs the others. Where the
envs run (worker processes or this one) is ``reverie.envs.make_envs``'s business: the driver
sends every env its action before it waits for any (``call_all``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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


@dataclasses.dataclass
class Slot:
    """One env of the driver: its current observation (None between episodes) and the totals
    of its running episode."""

    env: Env
    obs: dict[str, Any] | None = None
    episode: Episode = dataclasses.field(default_factory=Episode)


class Driver:
    """Keeps every env's current observation and running episode's totals and the batched
    policy state, and owns them (with the envs' states) through ``state_dict``/``load_state_dict``.

    ``envs``: one env or a list of them; ``step_all`` plays one round of all, ``reset`` and
    ``step`` are the one-env form (evaluation)."""

    def __init__(self, envs: Env | Sequence[Env], agent: AgentContract, name: str = ""):
        from reverie.envs import action_dim

        envs = list(envs) if isinstance(envs, (list, tuple)) else [envs]
        self.slots = [Slot(env) for env in envs]
        self.name = name or type(envs[0]).__name__
        self.action_width = action_dim(envs[0].act_space)
        self.agent = agent
        self.policy_state: PolicyState | None = None

    @property
    def envs(self) -> list[Env]:
        return [slot.env for slot in self.slots]

    @property
    def env(self) -> Env:
        """The first env (the only one of a one-env driver)."""
        return self.slots[0].env

    @property
    def obs(self) -> dict[str, Any] | None:
        """The first env's current observation; None between its episodes."""
        return self.slots[0].obs

    @property
    def episode(self) -> Episode:
        return self.slots[0].episode

    def reset(self) -> dict[str, Any]:
        """Start an episode of the first env; returns its first step (with a zero action)."""
        return self.reset_finished()[0][1]

    def reset_finished(self) -> list[tuple[int, dict[str, Any]]]:
        """Start an episode in every env that has none (all at once); returns ``(env index,
        first step)`` pairs, each with a zero action, for the replay."""
        from reverie.envs.parallel import call_all

        waiting = [index for index, slot in enumerate(self.slots) if slot.obs is None]
        observations = call_all([self.slots[index].env for index in waiting], "reset", [()] * len(waiting))
        firsts = []
        for index, obs in zip(waiting, observations, strict=True):
            slot = self.slots[index]
            slot.obs, slot.episode = self._checked(obs, "at reset", index), Episode()
            firsts.append((index, {**slot.obs, "action": np.zeros(self.action_width, np.float32)}))
        return firsts

    def step(self, mode: str) -> tuple[dict[str, Any], Episode | None]:
        """One agent step of a one-env driver (after ``reset``): the new step (observation +
        the action that led to it) and, when the episode ended, its totals."""
        return self.step_all(mode)[0]

    def step_all(self, mode: str) -> list[tuple[dict[str, Any], Episode | None]]:
        """One round: one policy call for every env's current observation (each env must be
        inside an episode: ``reset_finished`` first), then every env steps with its action.
        Per env, in order: its new step and, when its episode ended, the episode's totals."""
        from reverie.envs.parallel import call_all

        with acting_threads(self.agent.device):
            actions, self.policy_state = self.agent.policy(batch_obs([slot.obs for slot in self.slots]),
                                                           self.policy_state, mode)
        observations = call_all(self.envs, "step", [(action,) for action in actions])
        return [self._advance(index, action, obs)
                for index, (action, obs) in enumerate(zip(actions, observations, strict=True))]

    def _advance(self, index: int, action: np.ndarray, obs: dict[str, Any]) -> tuple[dict[str, Any], Episode | None]:
        slot = self.slots[index]
        slot.obs = self._checked(obs, f"at step {slot.episode.length + 1} of an episode", index)
        slot.episode.score += float(slot.obs["reward"])
        slot.episode.length += 1
        transition = {**slot.obs, "action": np.asarray(action, np.float32)}
        if slot.obs["is_last"]:
            slot.obs = None
            return transition, slot.episode
        return transition, None

    def close(self) -> None:
        """Close every env (its worker too); the first error is raised after all were tried."""
        from reverie.envs.parallel import close_all

        close_all(self.envs)

    def state_dict(self) -> dict[str, Any]:
        """The first env's state at the top level (the format of one-env runs), the others' under
        ``more`` (``{"1": ..., }``), and the batched policy state. Per env, inside an episode: the
        env's whole state (``get_state``), the current observation and the running episode; at an
        episode end (no current observation): what the env's next reset draws from
        (``get_reset_state``), so a resumed run's next episode is the uninterrupted run's."""
        first, *others = [_slot_state(slot) for slot in self.slots]
        return {**first, "policy_state": self.policy_state,
                "more": {str(index): state for index, state in enumerate(others, 1)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``; the policy state's tensors must be on the agent's device
        (``load_checkpoint(..., map_location=agent.device)`` puts them there). A checkpoint of
        another number of envs is refused (the run's config keeps ``run.envs``)."""
        from reverie.errors import CheckpointError

        more = state.get("more") or {}
        if len(more) + 1 != len(self.slots):
            raise CheckpointError(f"the checkpoint holds {len(more) + 1} envs, this run has {len(self.slots)} "
                                  "(run.envs); resume with the run's own run.envs")
        states = [state, *(more[str(index)] for index in range(1, len(self.slots)))]
        restored = [_load_slot(slot, slot_state) for slot, slot_state in zip(self.slots, states, strict=True)]
        if any(restored):
            self.policy_state = state["policy_state"]

    def _checked(self, obs: dict[str, Any], when: str, index: int = 0) -> dict[str, Any]:
        """Refuse a NaN or infinite reward or observation: the world model would learn from it
        and the replay would keep it, so it stops the run naming the env (no silent training)."""
        for key, value in obs.items():
            array = np.asarray(value)
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                from reverie.errors import TaskError

                name = self.name if len(self.slots) == 1 else f"{self.name} (env {index})"
                raise TaskError(f"env {name} returned a non-finite {key} ({_first_bad(array)}) {when}; fix the "
                                "environment (or wrap it to clip or replace such values): Reverie does not train "
                                "on NaN or inf")
        return obs


def _slot_state(slot: Slot) -> dict[str, Any]:
    mid_episode = slot.obs is not None
    return {"env": slot.env.get_state() if mid_episode else slot.env.get_reset_state(), "obs": slot.obs,
            "episode": dataclasses.asdict(slot.episode), "mid_episode": mid_episode}


def _load_slot(slot: Slot, state: dict[str, Any]) -> bool:
    """Restore one env; True when it continues its episode (so the policy state matters)."""
    env_state = state["env"]
    if state["mid_episode"] and env_state is not None:  # the env continues its episode exactly
        slot.env.set_state(env_state)
        slot.obs, slot.episode = state["obs"], Episode(**state["episode"])
        return True
    slot.obs = None
    if not state["mid_episode"] and env_state is not None:  # between episodes: the next reset continues its streams
        slot.env.set_reset_state(env_state)
    # mid_episode without a state: the env cannot restore its episode, a new one starts (documented)
    return False


def _first_bad(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    return repr(float(flat[~np.isfinite(flat)][0]))


def batch_obs(obs: dict[str, Any] | list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Observations of N envs (or one) as arrays with a leading batch dimension ``[N, ...]``."""
    if isinstance(obs, dict):
        obs = [obs]
    return {key: np.stack([np.asarray(o[key]) for o in obs]) for key in obs[0]}
