"""Any registered Gymnasium environment as ``gym_<id>`` (``gym_CartPole-v1``), or any
``gymnasium.Env`` instance through ``GymEnv`` (for ``reverie.envs.register``).

Supported spaces: observations that are a ``Box`` of rank 1 (→ ``vector`` float32 ``[D]``)
or a uint8 image ``Box`` ``[H, W, C]`` / ``[H, W]`` (→ ``image``, resized to ``env.size``);
actions ``Discrete`` (one-hot) or a rank-1 ``Box`` (the agent's ``[-1, 1]``, clipped, then
rescaled to the env's bounds when they are finite). ``terminated`` → ``is_terminal`` and
``is_last``; ``truncated`` (the env's TimeLimit, or ``env.time_limit`` frames) → ``is_last`` only.
Use ``env.action_repeat=1`` for gym tasks unless the task wants repeats.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from reverie.envs.base import (
    Env,
    Obs,
    continuous_action,
    discrete_action,
    image_box,
    make_obs,
    rescale_action,
    resize,
    unit_box,
)
from reverie.errors import TaskError

SUPPORTED = ("observations: Box of rank 1 (vector) or uint8 Box [H, W, C] / [H, W] (image); "
             "actions: Discrete or Box of rank 1")


class GymEnv(Env):
    """Wraps a ``gymnasium.Env``. Seeded at its first reset; later resets continue its RNG."""

    def __init__(self, env: gymnasium.Env, seed: int = 0, *, action_repeat: int = 1,
                 size: tuple[int, int] = (64, 64), time_limit: int = 0):
        self.env, self.seed = env, int(seed)
        self.action_repeat, self.size, self.time_limit = int(action_repeat), tuple(size), int(time_limit)
        self.key, self.obs_space = observation_key(env.observation_space, self.size)
        self.act_space = action_space(env.action_space)
        self._frames, self._started, self._last_image = 0, False, None

    def reset(self) -> Obs:
        obs, _ = self.env.reset(seed=None if self._started else self.seed)
        self._frames, self._started = 0, True
        return make_obs(0.0, True, False, False, **{self.key: self._convert(obs)})

    def step(self, action: np.ndarray | int) -> Obs:
        action = self._action(action)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            obs, rew, terminated, truncated, _ = self.env.step(action)
            reward += float(rew)
            self._frames += 1
            truncated = truncated or 0 < self.time_limit <= self._frames
            if terminated or truncated:
                break
        return make_obs(reward, False, terminated or truncated, terminated, **{self.key: self._convert(obs)})

    def _action(self, action: np.ndarray | int) -> Any:
        space = self.env.action_space
        if isinstance(space, spaces.Discrete):
            return int(space.start) + discrete_action(action, int(space.n))
        action = continuous_action(action, space.shape[0])
        if np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
            action = rescale_action(action, space.low, space.high)
        return action.astype(space.dtype)

    def _convert(self, obs: np.ndarray) -> np.ndarray:
        if self.key == "vector":
            return np.asarray(obs, np.float32)
        self._last_image = resize(np.asarray(obs, np.uint8), self.size)
        return self._last_image

    def render(self) -> np.ndarray:
        if self._last_image is not None and self._last_image.shape[-1] == 3:
            return self._last_image
        frame = self.env.render() if self.env.render_mode == "rgb_array" else None
        if frame is None:
            raise TaskError(f"{self.env.spec.id if self.env.spec else self.env} cannot render rgb_array frames")
        return np.asarray(frame, np.uint8)

    def close(self) -> None:
        self.env.close()

    def get_state(self) -> dict[str, Any] | None:
        """For envs whose state is ``unwrapped.state`` (classic control): that array, the
        ``np_random`` bit-generator state and the step counters; otherwise None."""
        inner = self.env.unwrapped
        if getattr(inner, "state", None) is None or not self._started:
            return None
        state = {"state": np.array(inner.state, np.float64), "np_random": inner.np_random.bit_generator.state,
                 "frames": self._frames, "elapsed": _time_limit_steps(self.env)}
        if hasattr(inner, "steps_beyond_terminated"):  # CartPole's "stepped after done" flag
            state["steps_beyond_terminated"] = inner.steps_beyond_terminated
        return state

    def get_reset_state(self) -> dict[str, Any] | None:
        """Any env: the ``np_random`` stream its next ``reset`` continues (None before the first
        reset, where the seed alone decides it)."""
        if not self._started:
            return None
        return {"np_random": self.env.unwrapped.np_random.bit_generator.state}

    def set_reset_state(self, state: dict[str, Any]) -> None:
        if not self._started:
            self.reset()  # seeds the env once, as the first reset of the original did
        self.env.unwrapped.np_random.bit_generator.state = state["np_random"]

    def set_state(self, state: dict[str, Any]) -> None:
        if not self._started:  # the order-enforcing wrapper wants one reset first
            self.reset()
        inner = self.env.unwrapped
        inner.state = np.array(state["state"], np.float64)
        inner.np_random.bit_generator.state = state["np_random"]
        if "steps_beyond_terminated" in state:
            inner.steps_beyond_terminated = state["steps_beyond_terminated"]
        _time_limit_steps(self.env, state["elapsed"])
        self._frames = int(state["frames"])


def _time_limit_steps(env: gymnasium.Env, value: int | None = None) -> int | None:
    """Read (or set) the elapsed steps of the TimeLimit wrapper, if there is one."""
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, gymnasium.wrappers.TimeLimit):
            if value is not None:
                env._elapsed_steps = int(value)
            return int(env._elapsed_steps or 0)
        env = env.env
    return None


def observation_key(space: spaces.Space, size: tuple[int, int]) -> tuple[str, dict[str, spaces.Box]]:
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return "vector", {"vector": spaces.Box(-np.inf, np.inf, space.shape, np.float32)}
    if isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3):
        channels = space.shape[2] if len(space.shape) == 3 else 1
        return "image", {"image": image_box(*size, channels)}
    raise TaskError(f"unsupported observation space {space}; supported {SUPPORTED}")


def action_space(space: spaces.Space) -> spaces.Discrete | spaces.Box:
    if isinstance(space, spaces.Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return unit_box(space.shape[0])
    raise TaskError(f"unsupported action space {space}; supported {SUPPORTED}")


def _register_ale() -> None:
    """ale-py registers its Gymnasium ids (``ALE/Pong-v5``, ...) when imported; gymnasium 1.x
    no longer imports it by itself. Absent ale-py, those ids are simply not listed."""
    try:
        import ale_py  # noqa: F401
    except ImportError:
        pass


def gym_ids() -> list[str]:
    _register_ale()
    return sorted(gymnasium.registry)


def make_gym(env_id: str, config: Any, seed: int) -> GymEnv:
    _register_ale()
    if env_id not in gymnasium.registry:
        raise TaskError(f"unknown Gymnasium id {env_id!r}")
    try:
        env = gymnasium.make(env_id, render_mode="rgb_array")
    except (TypeError, gymnasium.error.Error):  # envs without an rgb_array mode
        env = gymnasium.make(env_id)
    try:
        return GymEnv(env, seed, action_repeat=config.env.action_repeat, size=tuple(config.env.size),
                      time_limit=config.env.time_limit)
    except TaskError as error:
        env.close()
        raise TaskError(f"gym_{env_id}: {error}") from None
