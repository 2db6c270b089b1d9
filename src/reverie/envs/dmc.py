"""DeepMind Control Suite (dm-control, ``mujoco==3.17.0``) from pixels, as in the paper's
continuous-control experiments: 64×64 RGB from the standard camera (camera 2 for
quadruped, else 0), action repeat 2 summing rewards, episodes of 1000 control steps
(dm-control's own limit, a truncation: ``is_last`` without ``is_terminal``).

Actions are float vectors in ``[-1, 1]``, **clipped** to that range, then rescaled to the
task's action bounds. Rendering is headless with the backend ``MUJOCO_GL`` names, which
dm-control reads when it is imported: the entry points set it for ``dmc_`` tasks
(``reverie.runtime``: ``egl``, ``osmesa`` when only OSMesa is installed; the Makefile exports
``egl``); a library user sets it. If rendering fails the error names the system packages.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from reverie.envs.base import (
    Env,
    Obs,
    continuous_action,
    image_box,
    make_obs,
    rescale_action,
    rng_state,
    set_rng_state,
    unit_box,
)
from reverie.errors import TaskError
from reverie.utils import require

GL_PACKAGES = {"egl": "apt-get install libegl1 libgl1", "osmesa": "apt-get install libosmesa6"}


def suite_module():
    """``dm_control.suite`` (its renderer is the one ``MUJOCO_GL`` named when it was first imported)."""
    try:
        return require("dm_control.suite", "dmc")
    except ImportError as error:
        raise TaskError(str(error)) from None


def render_failure(backend: str | None, error: Exception) -> str:
    """Why MuJoCo cannot render and what fixes it: the system packages of the backend, or
    choosing a headless one where none was chosen (dm-control then tries GLFW, which needs a display)."""
    if backend is None:
        return (f"MuJoCo cannot render ({error}): MUJOCO_GL was not set when dm_control was imported, so it "
                "chose a renderer that needs a display; set MUJOCO_GL=egl (or osmesa) before importing it, "
                "as the reverie commands do (reverie.runtime.prepare_process)")
    fix = GL_PACKAGES.get(backend, f"{GL_PACKAGES['egl']} (EGL) or {GL_PACKAGES['osmesa']} (OSMesa)")
    return (f"MuJoCo cannot render with MUJOCO_GL={backend} ({error}); install the system "
            f"packages: {fix}, or set MUJOCO_GL=osmesa with libosmesa6 installed")


def task_names() -> list[str]:
    """``<domain>_<task>`` for every task of ``dm_control.suite.ALL_TASKS``."""
    return [f"{domain}_{task}" for domain, task in suite_module().ALL_TASKS]


def split_name(name: str) -> tuple[str, str]:
    """``walker_walk`` → (``walker``, ``walk``); domains may contain ``_`` (``ball_in_cup``)."""
    for domain, task in suite_module().ALL_TASKS:
        if name == f"{domain}_{task}":
            return domain, task
    raise TaskError(f"unknown DMC task {name!r} (`reverie tasks --suite dmc` lists them)")


class DMCEnv(Env):
    """Observation ``image`` uint8 ``[H, W, 3]``; action ``Box(-1, 1, [d])``. ``time_limit``
    counts frames (control steps; 0 = only dm-control's own limit)."""

    def __init__(self, name: str, seed: int = 0, *, action_repeat: int = 2, size: tuple[int, int] = (64, 64),
                 camera: int = -1, time_limit: int = 0):
        domain, task = split_name(name)
        self.env = suite_module().load(domain, task, task_kwargs={"random": int(seed)})
        spec = self.env.action_spec()
        self.low, self.high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.camera = (2 if domain == "quadruped" else 0) if camera < 0 else camera
        cameras = self.env.physics.model.ncam
        if self.camera >= cameras:
            self.env.close()
            raise TaskError(f"env.camera = {camera}: {domain} has cameras 0–{cameras - 1}; "
                            "set env.camera to one of them, or -1 for the default")
        self.action_repeat, self.size, self.time_limit = int(action_repeat), tuple(size), int(time_limit)
        self.obs_space = {"image": image_box(*self.size, 3)}
        self.act_space = unit_box(spec.shape[0])
        self._frames = 0
        self.render()  # fail at construction, with the fix, if headless GL is missing

    def reset(self) -> Obs:
        self.env.reset()
        self._frames = 0
        return make_obs(0.0, True, False, False, image=self.render())

    def step(self, action: np.ndarray) -> Obs:
        action = continuous_action(action, self.act_space.shape[0])
        action = rescale_action(action, self.low, self.high)
        reward, terminal, last = 0.0, False, False
        for _ in range(self.action_repeat):
            time_step = self.env.step(action)
            reward += time_step.reward or 0.0
            self._frames += 1
            # dm-control marks a real terminal state with discount 0; its time limit keeps 1.
            terminal = time_step.last() and time_step.discount == 0.0
            last = time_step.last() or 0 < self.time_limit <= self._frames
            if last:
                break
        return make_obs(reward, False, last, terminal, image=self.render())

    def render(self) -> np.ndarray:
        try:
            # MuJoCo hands out a vertically flipped view (negative strides): copy it into a
            # C-contiguous frame, as the env contract requires (torch cannot take the view).
            return np.ascontiguousarray(self.env.physics.render(*self.size, camera_id=self.camera))
        except Exception as error:  # mujoco raises several types when no GL context can be made
            raise TaskError(render_failure(os.environ.get("MUJOCO_GL"), error)) from error

    def close(self) -> None:
        self.env.close()

    def get_state(self) -> dict[str, Any]:
        """Physics state (qpos, qvel, act), MuJoCo's whole integration state (time, controls,
        the solver's warm start: without it the next steps differ in the 14th digit), the task
        RNG and the step counters. Tasks that keep state in the MuJoCo *model* (e.g. reacher's
        target position) are restored only at the next reset, which the restored RNG makes the same."""
        return {"physics": self.env.physics.get_state().copy(), "integration": self._integration_state(),
                "random": rng_state(self.env.task.random), "step_count": int(self.env._step_count),
                "reset_next": bool(self.env._reset_next_step), "frames": self._frames}

    def _integration_state(self) -> np.ndarray:
        import mujoco

        physics, spec = self.env.physics, mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(physics.model.ptr, spec), np.float64)
        mujoco.mj_getState(physics.model.ptr, physics.data.ptr, state, spec)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        with self.env.physics.reset_context():
            self.env.physics.set_state(np.asarray(state["physics"]))
        if "integration" in state:  # checkpoints written before it was saved have none
            import mujoco

            physics = self.env.physics
            mujoco.mj_setState(physics.model.ptr, physics.data.ptr, np.asarray(state["integration"], np.float64),
                               mujoco.mjtState.mjSTATE_INTEGRATION)
        set_rng_state(self.env.task.random, state["random"])
        self.env._step_count, self.env._reset_next_step = state["step_count"], state["reset_next"]
        self._frames = int(state["frames"])


def make_dmc(name: str, config: Any, seed: int) -> DMCEnv:
    env = config.env
    return DMCEnv(name, seed, action_repeat=env.action_repeat, size=tuple(env.size), camera=env.camera,
                  time_limit=env.time_limit)
