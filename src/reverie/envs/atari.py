"""Atari through ale-py directly, with the protocol of Machado et al. (2018) that the paper
uses (section 3, "Experimental setup"):

- sticky actions: the previous action is repeated with probability 0.25 each frame (applied
  here, frame by frame as the ALE would: the ALE's saved state leaves out the previous action,
  so a restored ALE could repeat another one and a resumed run would differ);
- the full action space: 18 actions for every game; no life information (a lost life is
  not terminal), no no-op starts, no frame stacking;
- action repeat 4 summing rewards, max-pool over the last two frames (Atari sprites
  flicker), grayscale, resize to 64×64 with area interpolation;
- an episode ends at game over (``is_terminal``) or after 108,000 frames (``is_last``
  only: a time limit is not a terminal state);
- rewards are raw; the tanh transform lives in the world model's reward target.

The official code's ``common.Atari`` differs in two defaults, offered here for preset
``atari_official``: ``full_action_space=False`` (the game's minimal action set) and
``noops=30`` (gym's ``AtariPreprocessing``: after each reset, 1..30 no-op frames drawn
uniformly, not counted by the time limit).

The ALE is seeded with the env seed, so the same seed gives the same episodes; the sticky
draws and the no-op counts come from generators seeded with it too. ``render()`` returns the full-resolution RGB screen ``[210, 160, 3]``.

The ALE's logger is the process's: the entry points set it to errors only (``reverie.runtime``);
a library user who builds an env sees the ALE's banner on stderr unless they set it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from reverie.envs.base import Env, Obs, discrete_action, image_box, make_obs, resize
from reverie.errors import TaskError
from reverie.utils import require


def ale_module():
    try:
        return require("ale_py", "atari")
    except ImportError as error:
        raise TaskError(str(error)) from None


def rom_ids() -> list[str]:
    """ROM ids ale-py ships and can load (``pong``, ``montezuma_revenge``, ``jamesbond``, ...).

    ale-py lists a few ROMs whose bundled file it cannot load (``combat``, ``joust``, ...);
    loading those ends the process, so they are left out."""
    ale_py = ale_module()
    return sorted(rom for rom in ale_py.roms.get_all_rom_ids()
                  if ale_py.ALEInterface.isSupportedROM(ale_py.roms.get_rom_path(rom)))


class AtariEnv(Env):
    """One ALE game. Observation ``image`` uint8 ``[H, W, 1]`` (grayscale) or ``[H, W, 3]``;
    action ``Discrete(18)`` (one-hot ``[18]`` or an int). ``time_limit`` counts raw frames
    (0 = none); ``life_loss=True`` makes a lost life terminal and ends the episode (the
    DQN convention; the paper does not use it); ``noops`` > 0 plays 1..noops no-op frames
    after each reset (the official code's 30; the paper: none)."""

    def __init__(self, game: str, seed: int = 0, *, action_repeat: int = 4, size: tuple[int, int] = (64, 64),
                 grayscale: bool = True, sticky_actions: float = 0.25, full_action_space: bool = True,
                 time_limit: int = 108_000, life_loss: bool = False, noops: int = 0):
        ale_py = ale_module()
        if game not in rom_ids():
            raise TaskError(f"unknown Atari ROM {game!r} (`reverie tasks --suite atari` lists them)")
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", int(seed) % 2**31)  # seeds the sticky-action RNG too
        self.ale.setFloat("repeat_action_probability", 0.0)  # sticky actions: in step(), see above
        self.ale.setInt("frame_skip", 1)  # we repeat actions ourselves, to max-pool frames
        self.ale.setInt("max_num_frames_per_episode", 0)  # our own counter: truncation ≠ terminal
        self.ale.loadROM(ale_py.roms.get_rom_path(game))
        # Full set = all 18 joystick actions; ale-py's "legal" set has only 9 for skiing.
        self.actions = list(ale_py.Action) if full_action_space else self.ale.getMinimalActionSet()
        self.game, self.action_repeat, self.size = game, int(action_repeat), tuple(size)
        self.grayscale, self.time_limit, self.life_loss = grayscale, int(time_limit), life_loss
        self.obs_space = {"image": image_box(*self.size, 1 if grayscale else 3)}
        self.act_space = spaces.Discrete(len(self.actions))
        self._frames, self._lives, self._done = 0, 0, True
        if noops < 0:
            raise TaskError(f"env.noops must be >= 0, got {noops}")
        self.noops = int(noops)
        self._noop_rng = np.random.Generator(np.random.PCG64(seed))
        self.sticky_actions = float(sticky_actions)
        self._sticky_rng = np.random.Generator(np.random.PCG64([seed, 1]))
        self._previous = self.actions[0]  # the action in effect: NOOP after a reset, as in the ALE

    def reset(self) -> Obs:
        self.ale.reset_game()
        self._previous = self.actions[0]
        if self.noops:
            for _ in range(int(self._noop_rng.integers(1, self.noops + 1))):
                self.ale.act(self.actions[0])  # NOOP is action 0 of the full and the minimal set
                if self.ale.game_over(with_truncation=False):
                    self.ale.reset_game()
        self._frames, self._lives, self._done = 0, self.ale.lives(), False
        return make_obs(0.0, True, False, False, image=self._image([self._screen()]))

    def step(self, action: np.ndarray | int) -> Obs:
        if self._done:
            raise TaskError("step() after the episode ended: call reset() first")
        act = self.actions[discrete_action(action, len(self.actions))]
        reward, screens, over, limit = 0.0, [], False, False
        for repeat in range(self.action_repeat):
            if not (self.sticky_actions and self._sticky_rng.random() < self.sticky_actions):
                self._previous = act  # else the previous action sticks for this frame
            reward += self.ale.act(self._previous)
            self._frames += 1
            over = self.ale.game_over(with_truncation=False)
            limit = 0 < self.time_limit <= self._frames
            if repeat >= self.action_repeat - 2 or over or limit:
                screens.append(self._screen())
            if over or limit:
                break
        lives = self.ale.lives()
        terminal = over or (self.life_loss and lives < self._lives)
        self._lives, self._done = lives, terminal or limit
        return make_obs(reward, False, self._done, terminal, image=self._image(screens))

    def _screen(self) -> np.ndarray:
        return self.ale.getScreenGrayscale() if self.grayscale else self.ale.getScreenRGB()

    def _image(self, screens: list[np.ndarray]) -> np.ndarray:
        # Max over the last two frames removes the flicker of sprites drawn every other frame.
        frame = screens[-1] if len(screens) == 1 else np.maximum(screens[-2], screens[-1])
        return resize(frame, self.size)

    def render(self) -> np.ndarray:
        return self.ale.getScreenRGB()

    def get_state(self) -> dict[str, Any]:
        # include_rng: the sticky-action RNG, so a restored env repeats the same future.
        blob = self.ale.cloneState(include_rng=True).serialize()
        return {"ale": np.frombuffer(blob, np.uint8).copy(), "frames": self._frames,
                "lives": self._lives, "done": self._done, "noop_rng": self._noop_rng.bit_generator.state,
                "sticky_rng": self._sticky_rng.bit_generator.state, "previous": self._previous.value}

    def set_state(self, state: dict[str, Any]) -> None:
        ale_py = ale_module()
        self.ale.restoreState(ale_py.ALEState(np.asarray(state["ale"], np.uint8).tobytes()))
        self._frames, self._lives, self._done = int(state["frames"]), int(state["lives"]), bool(state["done"])
        if "noop_rng" in state:  # checkpoints written before env.noops existed have none
            self._noop_rng.bit_generator.state = state["noop_rng"]
        if "sticky_rng" in state:  # before sticky actions moved out of the ALE: not exact
            self._sticky_rng.bit_generator.state = state["sticky_rng"]
            self._previous = ale_py.Action(state["previous"])


def make_atari(game: str, config: Any, seed: int) -> AtariEnv:
    """``atari_<rom>`` from ``config.env`` (the paper's protocol with the default config)."""
    env = config.env
    return AtariEnv(game, seed, action_repeat=env.action_repeat, size=tuple(env.size), grayscale=env.grayscale,
                    sticky_actions=env.sticky_actions, full_action_space=env.full_action_space,
                    time_limit=env.time_limit, life_loss=env.life_loss, noops=env.noops)
