"""The one environment protocol every suite implements (docs/ARCHITECTURE.md, "Environment").

An observation is a dict of numpy values: ``image`` uint8 ``[H, W, C]`` and/or ``vector``
float32 ``[D]``, plus ``reward`` (float, raw), ``is_first``, ``is_last``, ``is_terminal``
(bool). Every array is C-contiguous (MuJoCo's frames are flipped views with
negative strides, which ``torch.as_tensor`` refuses); ``make_obs`` guarantees it for every env. ``is_terminal`` marks only real terminal states (game over, a fall); a time limit
ends the episode with ``is_last`` alone, so the discount target stays γ there.
Actions are one-hot float vectors ``[n]`` (an int index is accepted too) for
``Discrete`` spaces and float vectors ``[d]`` in ``[-1, 1]`` for ``Box`` spaces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from reverie.errors import TaskError
from reverie.spaces import action_dim  # noqa: F401  (re-exported: reverie.envs.action_dim)
from reverie.utils import legacy_rng_from_dict, legacy_rng_to_dict, require

Obs = dict[str, Any]


class Env:
    """Base class: subclasses set ``obs_space`` and ``act_space`` and implement
    ``reset``, ``step`` and ``render``; ``get_state``/``set_state`` where they can."""

    obs_space: dict[str, spaces.Box]
    act_space: spaces.Discrete | spaces.Box

    def reset(self) -> Obs:
        """Start an episode: ``is_first`` true, reward 0."""
        raise NotImplementedError

    def step(self, action: np.ndarray | int) -> Obs:
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB frame for videos."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def get_state(self) -> dict[str, Any] | None:
        """Resumable state (emulator and RNG) as numpy arrays and JSON-able values; None if unsupported."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        raise TaskError(f"{type(self).__name__} cannot restore its state (get_state() returns None)")

    def get_reset_state(self) -> dict[str, Any] | None:
        """Between episodes (after ``is_last``): what the next ``reset`` draws from, i.e. the
        env's random streams, so a resumed run's next episode is the one the uninterrupted run
        would have had. Defaults to ``get_state()``, which holds those streams for envs that
        can save a running episode; None if there is nothing to save or it cannot be saved."""
        return self.get_state()

    def set_reset_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``get_reset_state``; the next call is ``reset()``."""
        self.set_state(state)


def make_obs(reward: float, first: bool, last: bool, terminal: bool, **values: np.ndarray) -> Obs:
    """The observation dict; array values are made C-contiguous (a no-op when they are)."""
    values = {key: np.ascontiguousarray(value) for key, value in values.items()}
    return {**values, "reward": float(reward), "is_first": bool(first), "is_last": bool(last),
            "is_terminal": bool(terminal)}


def discrete_action(action: np.ndarray | int, n: int) -> int:
    """Index of a one-hot ``[n]`` vector (argmax) or of an int."""
    if np.ndim(action) == 0:
        index = int(action)
    else:
        action = np.asarray(action)
        if action.shape != (n,):
            raise TaskError(f"discrete action must be a one-hot vector of shape ({n},) or an int, got shape {action.shape}")
        index = int(np.argmax(action))
    if not 0 <= index < n:
        raise TaskError(f"discrete action index {index} outside [0, {n})")
    return index


def continuous_action(action: np.ndarray, dim: int) -> np.ndarray:
    """A float vector ``[dim]``, **clipped** to ``[-1, 1]`` (sampling noise may overshoot
    slightly; a NaN or a wrong shape is a bug and raises)."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (dim,):
        raise TaskError(f"continuous action must have shape ({dim},), got {action.shape}")
    if not np.all(np.isfinite(action)):
        raise TaskError(f"continuous action has non-finite values: {action}")
    return np.clip(action, -1.0, 1.0)


def rescale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` → ``[low, high]``, per dimension (the agent's actions to the env's units)."""
    return low + (action + 1.0) / 2.0 * (high - low)


def unit_box(dim: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (dim,), np.float32)


def image_box(height: int, width: int, channels: int) -> spaces.Box:
    return spaces.Box(0, 255, (height, width, channels), np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w, C]`` or ``[h, w]`` uint8 to ``[H, W, C]`` with area interpolation (anti-aliased
    downsampling, as the Atari preprocessing of Machado et al. and the official code)."""
    if image.shape[:2] != tuple(size):
        cv2 = require("cv2", "atari")
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return image if image.ndim == 3 else image[:, :, None]


def rng_state(random: np.random.RandomState) -> dict[str, Any]:
    """A legacy ``RandomState`` as plain values (its ``get_state()`` tuple, named)."""
    return legacy_rng_to_dict(random.get_state())


def set_rng_state(random: np.random.RandomState, state: dict[str, Any]) -> None:
    random.set_state(legacy_rng_from_dict(state))
