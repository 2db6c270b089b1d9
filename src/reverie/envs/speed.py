"""Random-policy environment speed: is the env fast enough not to bottleneck training?

``bench_env(task, steps)`` times ``steps`` agent steps (resets included) of a uniform random
policy through ``make_env`` with the preset the task trains with (its suite's,
``reverie.config.default_preset``). For Atari it also times the bare ALE (same sticky actions, random actions, no
screen reads) on the same machine, the ceiling our wrapper can approach.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium import spaces

from reverie.envs.base import action_dim


def task_config(task: str, seed: int = 0):
    """The config a task is benchmarked with: the one ``reverie train --task`` trains it with."""
    from reverie.config import default_preset, load_config

    return load_config(default_preset(task), [f"task={task}", f"seed={seed}"])


def random_action(act_space: spaces.Space, rng: np.random.Generator) -> np.ndarray:
    """One-hot ``[n]`` for Discrete, uniform ``[d]`` in [-1, 1] for Box."""
    if isinstance(act_space, spaces.Discrete):
        return np.eye(act_space.n, dtype=np.float32)[rng.integers(act_space.n)]
    return rng.uniform(-1, 1, action_dim(act_space)).astype(np.float32)


def bench_env(task: str, steps: int, seed: int = 0) -> dict[str, Any]:
    """Agent steps/s and frames/s (frames = agent steps × action repeat) of a random policy;
    for Atari also the raw ALE frames/s and our fraction of it."""
    from reverie.envs import make_env

    config = task_config(task, seed)
    env, rng = make_env(config), np.random.default_rng(seed)
    obs, episodes = env.reset(), 0
    start = time.perf_counter()
    for _ in range(steps):
        obs = env.step(random_action(env.act_space, rng))
        if obs["is_last"]:
            obs, episodes = env.reset(), episodes + 1
    seconds = time.perf_counter() - start
    env.close()
    result = {"task": task, "agent_steps": steps, "episodes_finished": episodes, "seconds": round(seconds, 3),
              "action_repeat": config.env.action_repeat, "agent_steps_per_s": round(steps / seconds, 1),
              "frames_per_s": round(steps * config.env.action_repeat / seconds, 1)}
    if task.startswith("atari_"):
        raw = ale_raw_fps(task[len("atari_"):], steps * config.env.action_repeat, seed, config.env.sticky_actions)
        result["ale_raw_frames_per_s"] = round(raw, 1)
        result["fraction_of_raw_ale"] = round(result["frames_per_s"] / raw, 3)
    return result


def ale_raw_fps(game: str, frames: int, seed: int = 0, sticky: float = 0.25) -> float:
    """Frames/s of the bare ALE: ``act`` with random actions, reset at game over, nothing else."""
    from reverie.envs.atari import ale_module

    ale_py = ale_module()
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", sticky)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    actions = list(ale_py.Action)
    choices = np.random.default_rng(seed).integers(len(actions), size=frames)
    start = time.perf_counter()
    for index in choices:
        ale.act(actions[index])
        if ale.game_over():
            ale.reset_game()
    return frames / (time.perf_counter() - start)
