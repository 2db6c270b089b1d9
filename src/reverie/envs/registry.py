"""Task names → environment factories.

``atari_<rom>`` (ale-py ROM ids: ``atari_pong``, ``atari_montezuma_revenge``), ``dmc_<domain>_<task>``
(``dmc_walker_walk``), ``gym_<id>`` (any registered Gymnasium id: ``gym_CartPole-v1``),
``minatar_<game>`` (``minatar_breakout``, ``minatar_space_invaders``), and
names registered from Python with ``register``. The suites' packages are imported only when
a task of theirs is made or listed, so ``import reverie.envs`` needs none of them.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from reverie.atari_games import ATARI55
from reverie.envs.base import Env
from reverie.envs.parallel import ProcessEnv, close_all
from reverie.errors import ConfigError, TaskError

# A factory builds an env from the resolved config and the env seed (already derived for the mode).
Factory = Callable[[Any, int], Env]

_CUSTOM: dict[str, Factory] = {}
# Prefix → (module, factory(name, config, seed)); the module is imported only when used.
SUITES = {"atari": ("reverie.envs.atari", "make_atari"), "dmc": ("reverie.envs.dmc", "make_dmc"),
          "gym": ("reverie.envs.gym", "make_gym"), "minatar": ("reverie.envs.minatar", "make_minatar")}
EXTRAS = {"atari": "pip install 'reverie[atari]'", "dmc": "pip install 'reverie[dmc]'",
          "minatar": "pip install 'reverie[minatar]'"}


def register(name: str, factory: Factory, overwrite: bool = False) -> None:
    """Make ``name`` a task: ``make_env`` calls ``factory(config, seed)`` and expects an ``Env``.

    Example, wrapping a Gymnasium env of your own::

        from reverie.envs import register
        from reverie.envs.gym import GymEnv
        register("my_task", lambda config, seed: GymEnv(MyGymEnv(), seed, size=tuple(config.env.size)))

    Registered names take precedence over the ``atari_``/``dmc_``/``gym_`` prefixes.
    """
    if name in _CUSTOM and not overwrite:
        raise TaskError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    _CUSTOM[name] = factory


def eval_seed(seed: int, step: int) -> int:
    """The seed of the evaluation at agent step ``step`` of the run seeded ``seed``: the one
    rule for evaluation seeds. It seeds the eval env and the forked torch RNG its policy draws
    from, during training and in ``reverie eval`` alike, so the evaluation of a step repeats
    exactly. Drawn from ``(seed, step)`` by numpy's ``SeedSequence`` into ``[0, 2**31)`` (what
    every suite's seeding accepts), so no two evaluations of a study and no training env share
    a stream, as a sum like ``seed + step`` would let them."""
    return _drawn_seed(seed, step, _EVAL_STREAM)


def train_seed(seed: int, index: int) -> int:
    """The seed of training env ``index`` of the run seeded ``seed``: env 0 gets ``seed`` itself,
    so a run with one env is the run it was before runs had more; env i ≥ 1 one drawn from
    ``(seed, index)`` like ``eval_seed``, on a stream of its own, so that no two training envs
    and no evaluation share one (``seed + index`` would give run 1's env 0 to run 0's env 1)."""
    return int(seed) if index == 0 else _drawn_seed(seed, index, _TRAIN_STREAM)


# The third entropy word: a stream for each use, apart from [seed, n] uses elsewhere.
_EVAL_STREAM = 1
_TRAIN_STREAM = 2


def _drawn_seed(seed: int, number: int, stream: int) -> int:
    """A seed in ``[0, 2**31)`` (what every suite's seeding accepts) drawn from ``(seed, number, stream)``."""
    return int(np.random.SeedSequence([int(seed), int(number), stream]).generate_state(1)[0] % 2**31)


def env_seed(seed: int, mode: str, step: int = 0) -> int:
    """The train env uses ``seed``; the eval env of agent step ``step`` uses ``eval_seed(seed, step)``."""
    if mode not in ("train", "eval"):
        raise TaskError(f"env mode must be 'train' or 'eval', got {mode!r}")
    return eval_seed(seed, step) if mode == "eval" else int(seed)


def make_env(config: Any, mode: str = "train", step: int = 0) -> Env:
    """Build ``config.task`` with ``config.env`` settings, seeded by ``env_seed(config.seed, mode, step)``."""
    return resolve(config.task)(config, env_seed(config.seed, mode, step))


def make_envs(config: Any, count: int, parallel: str) -> list[Env]:
    """``count`` training envs of ``config.task``, env i seeded ``train_seed(config.seed, i)``:
    with ``parallel="process"`` and more than one env each runs in a worker process
    (``ProcessEnv``, stepped together by ``parallel.call_all``), else all run in this process.
    A task added with ``register()`` is refused in workers: a spawned worker starts without this
    process's registrations. If an env fails to build, the ones built are closed."""
    factory = resolve(config.task)  # an unknown task fails here, before any worker starts
    if parallel not in ("process", "none"):
        raise ConfigError(f"env.parallel must be 'process' or 'none', got {parallel!r}")
    if count < 1:
        raise ConfigError(f"run.envs must be at least 1, got {count}")
    in_workers = parallel == "process" and count > 1
    if in_workers and config.task in _CUSTOM:
        raise TaskError(f"task {config.task!r} is registered from Python, which env worker processes cannot "
                        "see; set env.parallel=none to run its envs in this process")
    envs: list[Env] = []
    try:
        for index in range(count):
            seed = train_seed(config.seed, index)
            envs.append(ProcessEnv(config.task, config, seed, index, wait=False) if in_workers
                        else factory(config, seed))
        for env in envs:
            if isinstance(env, ProcessEnv):
                env.ready()  # after every worker started: they build their envs at the same time
    except BaseException:
        with contextlib.suppress(Exception):  # the error that got us here is the one to report
            close_all(envs)
        raise
    return envs


def resolve(task: str) -> Factory:
    """The factory of a task name; unknown names raise ``TaskError`` with the closest names,
    names of a suite that is not installed say which extra installs it."""
    if task in _CUSTOM:
        return _CUSTOM[task]
    suite, _, rest = task.partition("_")
    if suite in SUITES:
        names = _installed(suite)
        if names is None:
            raise TaskError(f"task {task!r} needs the {suite} suite, which is not installed: {EXTRAS[suite]}")
        if rest in names:
            module, factory = SUITES[suite]
            return functools.partial(getattr(importlib.import_module(module), factory), rest)
        if suite == "minatar":  # five games: list them all
            raise TaskError(f"unknown MinAtar game {rest!r}; the games are "
                            f"{', '.join('minatar_' + name for name in names)}")
    raise TaskError(f"unknown task {task!r}{suggest(task)}. Tasks are atari_<rom>, dmc_<domain>_<task>, "
                    "gym_<id>, minatar_<game> or registered names (`reverie tasks` lists them)")


def suggest(task: str) -> str:
    """'; closest: a, b, c' over the names of installed suites, plus install hints for missing ones."""
    names = list_tasks()
    missing = [suite for suite in SUITES if _installed(suite) is None]
    close = difflib.get_close_matches(task, names, n=3, cutoff=0.6)
    text = f"; closest: {', '.join(close)}" if close else ""
    if missing and not close:
        text += "; not installed: " + ", ".join(f"{suite} ({EXTRAS[suite]})" for suite in missing)
    return text


def _suite_names(suite: str) -> list[str]:
    """Names inside a suite (without its prefix); ``TaskError`` if the suite is not installed."""
    if suite == "atari":
        from reverie.envs.atari import rom_ids

        return rom_ids()
    if suite == "dmc":
        from reverie.envs.dmc import task_names

        return task_names()
    if suite == "minatar":
        from reverie.envs.minatar import game_names

        return game_names()
    from reverie.envs.gym import gym_ids

    return gym_ids()


def _installed(suite: str) -> list[str] | None:
    """Names inside an installed suite, or None when its package is missing."""
    try:
        return _suite_names(suite)
    except TaskError:
        return None


def list_tasks(suite: str = "all") -> list[str]:
    """Every task name of a suite (``atari``, ``dmc``, ``gym``, ``minatar``, ``custom`` or ``all``) that is installed."""
    suites = (*SUITES, "custom") if suite == "all" else (suite,)
    tasks = []
    for name in suites:
        tasks += sorted(_CUSTOM) if name == "custom" else [f"{name}_{t}" for t in _installed(name) or []]
    return tasks


def format_tasks(suite: str = "all") -> str:
    """A printable listing for ``reverie tasks``: the paper's 55 Atari games marked with ``*``."""
    lines = []
    headers = {"atari": "Atari (ale-py; * = the paper's 55 games, Machado et al. protocol):",
               "dmc": "DeepMind Control (dm-control, from pixels):",
               "minatar": "MinAtar (Young & Tian 2019; --preset minatar):"}
    for name, header in headers.items():
        if suite in (name, "all"):
            names = _installed(name)
            lines.append(header)
            lines += [f"  {'*' if name == 'atari' and task in ATARI55 else ' '} {name}_{task}"
                      for task in names or []] if names is not None else [f"  not installed: {EXTRAS[name]}"]
    if suite in ("gym", "all"):
        lines.append("Gymnasium: gym_<id> for any registered id with a rank-1 Box or uint8 image observation "
                     "and a Discrete or rank-1 Box action, e.g. gym_CartPole-v1, gym_Pendulum-v1 "
                     "(set env.action_repeat=1); `python -c 'import gymnasium; gymnasium.pprint_registry()'` "
                     "lists the ids")
    if _CUSTOM and suite == "all":
        lines.append("Registered from Python:")
        lines += [f"    {name}" for name in sorted(_CUSTOM)]
    return "\n".join(lines)
