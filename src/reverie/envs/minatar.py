"""MinAtar (Young & Tian, 2019) as ``minatar_<game>``: five Atari-like games on a 10×10 grid
with one binary channel per object: ``asterix``, ``breakout``, ``freeway``, ``seaquest``,
``space_invaders``.

- ``minatar.Environment`` directly (its Gymnasium registration does not load under
  gymnasium 1.x), with its defaults: sticky actions 0.1 (``env.sticky_actions``) and
  difficulty ramping on.
- Actions: all 6 (``env.full_action_space=true``, Young & Tian's setting and that of their
  DQN numbers) or the game's minimal set (``false``: 3–6 actions, as some ports use).
- Observation: ``vector`` float32 ``[10·10·C]``, the game's bool grid ``[10, 10, C]``
  flattened row-major with 0/1 values (C = 4 breakout, 7 freeway, 10 seaquest, 6 space
  invaders, 4 asterix). A flat vector keeps every cell exact for the MLP encoder, where
  stride-2 convolutions over 10×10 would blur or drop border cells. Its space is a
  ``GridBox`` (``reverie.spaces``): the same flat Box, plus ``grid = (10, 10, C)``, which the
  grid encoder and decoder (``world_model.encoder.kind=grid``) fold the vector back with.
- One agent step is one game frame (``env.action_repeat`` must be 1). An episode ends at the
  game's own end (``is_terminal``; Freeway's 2,500-frame clock is part of its rules) or
  after ``env.time_limit`` frames (``is_last`` only; 0 = none), since Asterix, Breakout,
  Seaquest and Space Invaders can otherwise run forever under a good policy.

Seeded through ``Environment.seed`` (one ``RandomState`` shared by the sticky actions and
the game); ``get_state``/``set_state`` save that RNG and the game's attributes, so a resumed
run continues the same episode exactly. ``render()`` returns an RGB frame ``[80, 80, 3]``.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from gymnasium import spaces

from reverie.envs.base import Env, Obs, discrete_action, make_obs, rng_state, set_rng_state
from reverie.errors import TaskError
from reverie.spaces import GridBox

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
# Pixels per grid cell in render() frames, and one colour per channel (channel order of the game).
RENDER_SCALE = 8
PALETTE = np.array([[230, 230, 230], [230, 80, 60], [240, 200, 40], [80, 200, 90], [70, 130, 230],
                    [200, 90, 220], [60, 210, 210], [250, 150, 60], [150, 150, 150], [120, 80, 40]], np.uint8)


def minatar_module():
    try:
        import minatar
    except ImportError:
        raise TaskError("MinAtar tasks need the minatar package: pip install 'reverie[minatar]'") from None
    return minatar


def game_names() -> list[str]:
    """The five games (``TaskError`` when the minatar package is missing)."""
    minatar_module()
    return list(GAMES)


def channel_names(game: str) -> list[str]:
    """The game's object channels in observation order (``player``, ``enemy``, ... for asterix)."""
    if game not in GAMES:
        raise TaskError(f"unknown MinAtar game {game!r}; the games are {', '.join(GAMES)}")
    channels = minatar_module().Environment(game).env.channels
    return sorted(channels, key=channels.get)


class MinAtarEnv(Env):
    """One MinAtar game. Observation ``vector`` float32 ``[10·10·C]`` (0/1; its space a
    ``GridBox`` with ``grid = (10, 10, C)``); action ``Discrete(6)`` (all actions) or
    ``Discrete(len(minimal set))``, one-hot or an int. ``time_limit`` counts frames (= agent
    steps; 0 = none)."""

    def __init__(self, game: str, seed: int = 0, *, sticky_actions: float = 0.1, full_action_space: bool = True,
                 time_limit: int = 10_000, difficulty_ramping: bool = True):
        minatar = minatar_module()
        if game not in GAMES:
            raise TaskError(f"unknown MinAtar game {game!r}; the games are {', '.join('minatar_' + g for g in GAMES)}")
        self.game = game
        self.env = minatar.Environment(game, sticky_action_prob=float(sticky_actions),
                                       difficulty_ramping=difficulty_ramping)
        self.env.seed(int(seed))
        self.actions = list(range(self.env.num_actions())) if full_action_space else self.env.minimal_action_set()
        self.shape = tuple(self.env.state_shape())
        self.time_limit = int(time_limit)
        self.obs_space = {"vector": GridBox(self.shape)}
        self.act_space = spaces.Discrete(len(self.actions))
        self._frames, self._done = 0, True

    def reset(self) -> Obs:
        self.env.reset()  # as minatar: the sticky previous action carries over from the last episode
        self._frames, self._done = 0, False
        return make_obs(0.0, True, False, False, vector=self._vector())

    def step(self, action: np.ndarray | int) -> Obs:
        if self._done:
            raise TaskError("step() after the episode ended: call reset() first")
        reward, terminal = self.env.act(self.actions[discrete_action(action, len(self.actions))])
        self._frames += 1
        limit = 0 < self.time_limit <= self._frames
        self._done = bool(terminal) or limit
        return make_obs(float(reward), False, self._done, bool(terminal), vector=self._vector())

    def _vector(self) -> np.ndarray:
        return self.env.state().astype(np.float32).reshape(-1)

    def render(self) -> np.ndarray:
        """The grid as RGB ``[80, 80, 3]``: each object channel in its colour, later channels on top."""
        grid = self.env.state()
        frame = np.zeros((*grid.shape[:2], 3), np.uint8)
        for channel in range(grid.shape[2]):
            frame[grid[:, :, channel]] = PALETTE[channel % len(PALETTE)]
        return np.kron(frame, np.ones((RENDER_SCALE, RENDER_SCALE, 1), np.uint8))

    def get_state(self) -> dict[str, Any]:
        """The shared ``RandomState``, the game's attributes (pickled: ints, lists and small
        arrays; ``random`` left out) and the counters."""
        game = {key: value for key, value in vars(self.env.env).items() if key != "random"}
        return {"rng": rng_state(self.env.random), "game": np.frombuffer(pickle.dumps(game), np.uint8).copy(),
                "last_action": int(self.env.last_action), "frames": self._frames, "done": self._done}

    def set_state(self, state: dict[str, Any]) -> None:
        # In place: the game and the sticky actions share this one RandomState (Environment.seed).
        set_rng_state(self.env.random, state["rng"])
        vars(self.env.env).update(pickle.loads(np.asarray(state["game"], np.uint8).tobytes()))
        self.env.last_action = int(state["last_action"])
        self._frames, self._done = int(state["frames"]), bool(state["done"])


def make_minatar(game: str, config: Any, seed: int) -> MinAtarEnv:
    """``minatar_<game>`` from ``config.env`` (``--preset minatar`` sets its protocol)."""
    env = config.env
    if env.action_repeat != 1:
        raise TaskError(f"MinAtar steps one frame per action: set env.action_repeat=1 (got {env.action_repeat}), "
                        "e.g. with --preset minatar")
    return MinAtarEnv(game, seed, sticky_actions=env.sticky_actions, full_action_space=env.full_action_space,
                      time_limit=env.time_limit)


def minatar_reference() -> dict[str, dict[str, Any]]:
    """Published MinAtar returns (``data/minatar_reference.csv``, approximate: read off the
    sources' figures) and the random policy's: ``{key: {"label", "steps", "actions",
    "returns", "scores": {game: value}}}``, keys ``random``, ``random_minimal``, ``dqn_250k``,
    ``dqn_1m``, ``dqn_5m``, ``port_200k``, ``port_300k``, ``port_500k``, ``port_1m``; a score not
    read off its figure is absent (DQN's Freeway at 250k)."""
    import csv
    import io
    from importlib import resources

    text = (resources.files("reverie") / "data" / "minatar_reference.csv").read_text()
    return {row["key"]: {"label": row["label"], "steps": int(row["steps"]), "actions": row["actions"],
                         "returns": row["returns"], "scores": {game: float(row[game]) for game in GAMES if row[game]}}
            for row in csv.DictReader(io.StringIO(text))}
