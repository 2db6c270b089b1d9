"""Learning parity: the official DreamerV2 (TF2, PyPI ``dreamerv2==2.2.0``) trained by its own
loop, ``dreamerv2.api.train(env, config)``, next to ``reverie train``, with the same hyper
parameters on the same tasks and seeds; the training-episode return against agent steps of
both, overlaid, with a bootstrap interval on the difference of their areas.

    make learning-parity                                   # run, then report, with the defaults
    make learning-parity LP_ARGS="--tasks gym_CartPole-v1 --seeds 0,1"
    .venv/bin/python -m benchmarks.learning_parity run --tasks gym_CartPole-v1 --seeds 0,1,2 --jobs 2
    .venv/bin/python -m benchmarks.learning_parity report  # benchmarks/results/learning_parity/

``run`` launches one process per (task, side, seed), ``--jobs`` at a time, into
``runs/learning_parity/<task>/<side>/<seed>/`` (``runs/`` is not in git):

- official: ``.venv-parity/bin/python -m benchmarks.learning_parity official-run --task T --seed S
  --steps N --logdir D``, which installs the shims of ``tests/parity/official.py`` (a fake ``gym``
  module, ``mixed_precision.experimental``, legacy Adam, ``np.bool``), builds the env and calls
  ``dreamerv2.api.train`` in graph mode (``jit: True``, as users run it) at float32 (``--set``
  items are Reverie keys: the official side derives its config from them, as below);
- reverie: ``.venv/bin/reverie train --task T --preset P --seed S --steps N --logdir D --set ...``.

Both configs come from one table, ``MAPPING``: the Reverie config is resolved from the task's
presets and overrides (``TASKS``), and every official key is computed from it, so the two
cannot drift. Every Reverie key is either in ``MAPPING`` or in ``UNMAPPED`` with the reason it
has no official counterpart (``unaccounted`` lists the others; a unit test keeps it empty).

The env is the same code on both sides: the official driver wraps Reverie's own env for the
task (``reverie.envs.make_env``, seeded with the run's seed) in ``OldGymEnv``, the old gym API
that ``common.GymWrapper`` expects, passing ``is_terminal`` in ``info`` so that a truncation
(CartPole's 500 and Pendulum's 200 steps, MinAtar's ``env.time_limit``) is not terminal, as in
Reverie. Observations are Reverie's ``vector`` on both sides.

A run whose logdir finished is skipped, so an interrupted study resumes: ``reverie train``
resumes its logdir exactly; the official loop continues from its replay and
``variables.pkl`` (saved every ``run.checkpoint_every`` steps), with its step counter
restarted at the steps of its stored episodes, which leaves out the episodes it did not store
(shorter than ``minlen``) and the running one: a resumed official curve is shifted by those.

Defaults (``make learning-parity``): CartPole 20k and Pendulum 10k agent steps with seeds 0, 1,
2, MinAtar Breakout 50k with seeds 0–4 (``Task.seeds``: random Breakout's short episodes score
0–2, so its curves are noisy), ``--jobs 2`` with one thread per run. Measured on the 2-core VM
(2026-12-04, two runs at a time): CartPole 58 s (official) and 60 s (Reverie) per 1,000 steps
after prefill, Pendulum 64 and 62 s, Breakout 761–822 s and 848–984 s per 50k-step run. That is
about 1.8 core-hours for CartPole, 0.8 for Pendulum and 2.4 for Breakout: 5 core-hours, 2.5 hours
on two cores, within the issue's 10. At 15k steps neither side had left random Breakout; at 50k
both are only starting to. The ``minatar`` preset itself trains 0.7–2.4 by 20k–50k steps; here
both sides must use a Normal decoder on the 0/1 grid and the official replay rules (the likely
cause of the slower start, not isolated).

``report`` reads the logdirs and writes ``summary.json``, one figure per task and a README:
the curves binned onto ``BINS`` equal stretches of the step axis (the mean return of the
episodes that end in each, empty ones interpolated), mean ± sample std over seeds; the area
under each run's curve divided by its steps (a mean return, ``auc``); the bootstrap 95 %
interval of the difference of the mean areas, reverie − official (seeds resampled with
replacement on each side, 10,000 times, RNG seed 0); the final score (mean return of the
episodes that end in the last 10 % of the steps); and each side's wall time per 1,000 agent
steps after prefill. A crashed run is listed with its log and never averaged in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cpu_model

ROOT = Path(__file__).resolve().parent.parent

SIDES = ("official", "reverie")
BINS = 50  # points of the common step grid of the curves
RESAMPLES = 10_000  # bootstrap resamples of the seeds
FINAL_FRACTION = 0.1  # the final score: episodes that end in the last 10 % of the steps
SAVE_EVERY = 5_000  # at most this many agent steps between checkpoints (resume granularity)
CHILDREN: list[subprocess.Popen] = []  # the running runs, stopped with this script
STOP = threading.Event()  # set when the study is stopped: no queued run starts after it


class StudyError(Exception):
    """Bad input (a missing venv, an unknown task, a seed list that does not parse, a setting
    with no official counterpart): one line naming the fix, exit code 2."""


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """A task of the study: Reverie presets and overrides (the official config follows from
    them through ``MAPPING``), the default agent steps, the figure's file name and the default
    seeds (5 where the curves are noisy)."""

    presets: str
    overrides: tuple[str, ...]
    steps: int
    name: str
    seeds: tuple[int, ...] = (0, 1, 2)


# The official replay rules on both sides: only finished episodes of at least L steps are
# sampled (official ``ongoing: False, minlen = maxlen = L``; ``replay.minlen`` is set to L by
# ``reverie_settings``); no evaluation (api.train has none); the CPU, as tensorflow-cpu. Discrete
# tasks keep the official default ``prioritize_ends: True``; Pendulum takes the official DMC
# settings (dynamics backpropagation, no discount head, uniform sequence starts).
COMMON = ("replay.ongoing=false", "run.eval_every=0", "device=cpu")
CONTINUOUS = ("behavior.actor.dist=trunc_normal", "behavior.reinforce_mix=0", "behavior.entropy=1e-4",
              "world_model.heads.discount=false", "world_model.grad_heads=[image,reward]",
              "replay.prioritize_ends=false", "replay.clip_start=false")
TASKS = {
    "gym_CartPole-v1": Task("gym,cartpole", ("replay.prioritize_ends=true",), 20_000, "cartpole"),
    "gym_Pendulum-v1": Task("gym,cartpole", CONTINUOUS, 10_000, "pendulum"),
    # The official code has no Bernoulli decoder: Normal(mean, 1) on the 0/1 grid on both sides.
    # Nor grid convs (its vector encoder is an MLP), nor a schedule of η here (the mapping takes
    # a constant), nor windows that cross episodes: the `minatar` preset as it was when the study
    # ran, MLP and η = 1e-2, windows inside their episodes.
    # Random Breakout scores 0–2 per short episode: 5 seeds, and 50k steps so that learning shows.
    "minatar_breakout": Task("minatar", ("world_model.decoder.vector_dist=normal", "replay.prioritize_ends=true",
                                         "world_model.encoder.kind=mlp", "world_model.decoder.kind=mlp",
                                         "behavior.entropy=1e-2", "replay.cross_episodes=false"),
                             50_000, "breakout", seeds=(0, 1, 2, 3, 4)),
}


# --------------------------------------------------------------------------- the one table


class MappingError(StudyError):
    """A Reverie setting the official code cannot express."""


@dataclass(frozen=True)
class Row:
    """Reverie keys → official keys: ``convert`` takes the Reverie values (in order) and returns
    the official value, or a tuple of them when there are several official keys; with no
    official key it only checks that Reverie has the value the official code hard-codes."""

    reverie: tuple[str, ...]
    official: tuple[str, ...]
    convert: Callable[..., Any]


def row(reverie: str | tuple[str, ...], official: str | tuple[str, ...] = (),
        convert: Callable[..., Any] = lambda value: value) -> Row:
    as_tuple = lambda keys: (keys,) if isinstance(keys, str) else keys  # noqa: E731
    return Row(as_tuple(reverie), as_tuple(official), convert)


def require(expected: Any, why: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value != expected:
            raise MappingError(f"{value!r} has no official counterpart ({why}); use {expected!r}")
    return check


def number(value: Any) -> float:
    """A constant: the official config types these keys as floats, so schedule strings do not map."""
    if isinstance(value, str):
        raise MappingError(f"the schedule {value!r} has no official counterpart here; use a constant")
    return value


def official_pretrain(pretrain: int) -> int:
    # The official loop makes one update to build its variables, then `pretrain` more.
    if pretrain < 1:
        raise MappingError("run.pretrain=0: the official loop always makes at least one update; use >= 1")
    return pretrain - 1


def official_prioritize(prioritize_ends: bool, clip_start: bool, cross_episodes: bool) -> bool:
    # Official prioritize_ends false draws among the starts that fit, Reverie's clip_start false.
    if cross_episodes:
        raise MappingError("replay.cross_episodes=true has no official counterpart (the official windows end "
                           "inside their episode); set replay.cross_episodes=false")
    if not prioritize_ends and clip_start:
        raise MappingError("replay.clip_start=true (paper sec. 2.1) has no official counterpart; "
                           "set replay.clip_start=false or replay.prioritize_ends=true")
    return prioritize_ends


def official_actor_grad(mix: Any) -> tuple[str, float]:
    """Reverie ρ (1 = Reinforce) → official (actor_grad, actor_grad_mix = weight of dynamics)."""
    mix = number(mix)
    return ("reinforce" if mix == 1 else "dynamics" if mix == 0 else "both"), 1.0 - mix


def opt_rows(reverie: str, official: str) -> list[Row]:
    return [row(f"{reverie}.lr", f"{official}.lr", number), row(f"{reverie}.eps", f"{official}.eps"),
            row(f"{reverie}.clip", f"{official}.clip"), row(f"{reverie}.weight_decay", f"{official}.wd")]


def net_rows(reverie: str, official: str) -> list[Row]:
    return [row(f"{reverie}.{key}", f"{official}.{key}") for key in ("layers", "units")]


def coder_rows(part: str) -> list[Row]:
    wm = f"world_model.{part}"
    return [row((f"{wm}.mlp_layers", f"{wm}.mlp_units"), f"{part}.mlp_layers", lambda n, units: [units] * n),
            row(f"{wm}.depth", f"{part}.cnn_depth"), row(f"{wm}.kernels", f"{part}.cnn_kernels"),
            row(f"{wm}.kind", (), require("mlp", f"the official {part} of vectors is an MLP"))]


MAPPING: list[Row] = [
    row("run.steps", "steps"), row("run.train_every", "train_every"), row("run.train_steps", "train_steps"),
    row("run.prefill", "prefill"), row("run.pretrain", "pretrain", official_pretrain),
    row("run.log_every", "log_every"),
    row("run.envs", (), require(1, "dreamerv2.api.train steps the one env it is given")),
    # The official loop saves variables.pkl after every eval_every agent steps (it has no evaluation).
    row("run.checkpoint_every", "eval_every"),
    row("env.action_repeat", "action_repeat"),  # the official logger's step multiplier (frames)
    row("env.reward_transform", "clip_rewards"),
    row("precision", "precision", lambda p: 32 if p == "fp32" else require("fp32", "official fp16 is for GPUs")(p)),
    row("replay.capacity", "replay.capacity"), row("replay.ongoing", "replay.ongoing"),
    row("replay.minlen", "replay.minlen"), row("replay.length", ("replay.maxlen", "dataset.length"), lambda n: (n, n)),
    row(("replay.prioritize_ends", "replay.clip_start", "replay.cross_episodes"), "replay.prioritize_ends",
        official_prioritize),
    row("replay.batch", "dataset.batch"),
    row("world_model.rssm.deter", "rssm.deter"), row("world_model.rssm.hidden", "rssm.hidden"),
    row("world_model.rssm.stoch", "rssm.stoch"), row("world_model.rssm.classes", "rssm.discrete"),
    row("world_model.rssm.min_std", "rssm.min_std"),
    row("world_model.rssm.layer_norm", (), require(True, "the official GRU cell always normalises")),
    *coder_rows("encoder"), *coder_rows("decoder"),
    row("world_model.decoder.vector_dist", (), require("normal", "the official MLP decoder is Normal(mean, 1)")),
    row("world_model.heads.layers", ("reward_head.layers", "discount_head.layers"), lambda n: (n, n)),
    row("world_model.heads.units", ("reward_head.units", "discount_head.units"), lambda n: (n, n)),
    row("world_model.heads.discount", "pred_discount"),
    row("world_model.kl.scale", "loss_scales.kl"), row("world_model.kl.balance", "kl.balance"),
    row("world_model.kl.free", "kl.free"), row("world_model.kl.free_avg", "kl.free_avg"),
    # The official scale of the decoder's `vector` term is loss_scales.get('vector', 1.0).
    row("world_model.loss_scales.image", (), require(1.0, "the official decoder term has scale 1")),
    row("world_model.loss_scales.reward", "loss_scales.reward"),
    row("world_model.loss_scales.discount", "loss_scales.discount"),
    row("world_model.grad_heads", "grad_heads", lambda heads: [{"image": "decoder"}.get(h, h) for h in heads]),
    *opt_rows("world_model.opt", "model_opt"), *opt_rows("behavior.actor_opt", "actor_opt"),
    *opt_rows("behavior.critic_opt", "critic_opt"),
    row("behavior.horizon", "imag_horizon"), row("behavior.discount", "discount"),
    row("behavior.return_lambda", "discount_lambda"),
    row("behavior.reinforce_mix", ("actor_grad", "actor_grad_mix"), official_actor_grad),
    row("behavior.entropy", "actor_ent", number),
    row("behavior.slow_critic_every", "slow_target_update"),
    row("behavior.slow_critic_fraction", "slow_target_fraction"),
    row("behavior.expl_noise", "expl_noise", number), row("behavior.eval_noise", "eval_noise", number),
    *net_rows("behavior.actor", "actor"), row("behavior.actor.dist", "actor.dist"),  # auto: the same rule
    row("behavior.actor.min_std", "actor.min_std"), *net_rows("behavior.critic", "critic"),
]

ENV_BUILT_BY_REVERIE = "the env: Reverie's own env for the task serves both sides (OldGymEnv)"
UNMAPPED = {
    "seed": "the official driver seeds the env, numpy and random with it (api.train reads no seed)",
    "device": "cpu on both sides (the official side is tensorflow-cpu)",
    "task": ENV_BUILT_BY_REVERIE, "logdir": "each side's --logdir",
    "deterministic": "torch only", "compile": "torch only",
    "threads": "the official driver sets TF's intra- and inter-op threads to it",
    "wait": "OpenMP's wait policy of Reverie's threads; TF has its own thread pools",
    **{f"world_model.{part}.grid_{key}": "the grid nets' size: unused with kind=mlp, the official code's only kind"
       for part in ("encoder", "decoder") for key in ("layers", "depth")},
    "run.eval_every": "0: api.train has no evaluation", "run.eval_episodes": "no evaluation",
    "run.eval_sample": "no evaluation",
    "run.keep_checkpoints": "Reverie's checkpoint files", "run.video_every": "no videos of vector observations",
    "replay.chunk": "Reverie's on-disk layout",
    "env.parallel": "where Reverie runs its envs; a run of one env steps it in its own process either way",
    **{f"env.{key}": ENV_BUILT_BY_REVERIE for key in ("size", "grayscale", "sticky_actions", "full_action_space",
                                                     "noops", "time_limit", "life_loss", "camera")},
}
# Official keys that follow from the study, not from a Reverie value.
OFFICIAL_FIXED = {
    "jit": True,  # graph mode (tf.function), as users run it
    "time_limit": 0,  # the shared env ends its own episodes (env.time_limit, the gym TimeLimit)
    "encoder.mlp_keys": ".*", "encoder.cnn_keys": "$^", "decoder.mlp_keys": ".*", "decoder.cnn_keys": "$^",
    # A video key must name an observation (empty lists are refused); the [T, D] "video" of the
    # vector is dropped by the outputs, which write scalars only.
    "log_keys_video": ["vector"],
    "expl_behavior": "greedy", "expl_until": 0, "envs": 1,
}


def unaccounted(config: Any) -> list[str]:
    """Reverie keys in neither ``MAPPING`` nor ``UNMAPPED`` (and mapped keys that do not exist)."""
    from reverie.config import all_keys

    keys = set(all_keys(config))
    mapped = {key for item in MAPPING for key in item.reverie}
    return sorted((keys - mapped - set(UNMAPPED)) | (mapped - keys))


def official_updates(config: Any) -> dict[str, Any]:
    """The official config updates (dotted keys of ``configs.yaml``'s ``defaults``) that mirror
    the resolved Reverie ``config``, through ``MAPPING``, plus ``OFFICIAL_FIXED``."""
    from reverie.config import get_value

    updates: dict[str, Any] = {"task": config.task, "seed": config.seed}
    for item in MAPPING:
        values = [get_value(config, key) for key in item.reverie]
        try:
            result = item.convert(*values)
        except MappingError as error:
            raise MappingError(f"{', '.join(item.reverie)}: {error}") from None
        if len(item.official) == 1:
            result = (result,)
        updates.update(zip(item.official, result or ()))
    return {**updates, **OFFICIAL_FIXED}


def save_interval(steps: int, prefill: int, most: int = SAVE_EVERY) -> int:
    """The checkpoint interval: the largest divisor of the post-prefill steps up to a tenth of
    them and ``most``. The official loop runs whole ``eval_every`` chunks after prefill and
    saves after each, so it then ends at exactly ``steps``."""
    span = steps - prefill
    if span <= 0:
        return max(steps, 1)
    return max(d for d in range(1, max(1, min(span // 10, most)) + 1) if span % d == 0)


def reverie_settings(task: str, steps: int, threads: int, sets: list[str]) -> list[str]:
    """The ``--set key=value`` items of the task's ``reverie train`` after its presets: the
    task's overrides, ``COMMON``, the caller's ``sets``, then what follows from the result
    (``replay.minlen`` = L, the checkpoint interval, ``threads``)."""
    from reverie.config import load_config

    spec = TASKS[task]
    items = [*spec.overrides, *COMMON, *sets]
    try:
        first = load_config(spec.presets, [f"task={task}", f"run.steps={steps}", *items])
    except Exception as error:  # a ConfigError, or a value that does not parse
        raise StudyError(f"{task}: {error}") from None
    every = save_interval(first.run.steps, first.run.prefill)
    return [*items, f"replay.minlen={first.replay.length}", f"run.checkpoint_every={every}", f"threads={threads}"]


def resolve(task: str, seed: int, steps: int, threads: int, sets: list[str]) -> tuple[Any, dict[str, Any]]:
    """The Reverie ``Config`` of the run (as ``reverie train`` resolves it) and the official
    config updates that mirror it."""
    from reverie.config import load_config

    settings = reverie_settings(task, steps, threads, sets)
    config = load_config(TASKS[task].presets, [*settings, f"task={task}", f"seed={seed}", f"run.steps={steps}"])
    return config, official_updates(config)


# --------------------------------------------------------------------------- the official side


class OldGymEnv:
    """A Reverie ``Env`` behind the old gym API that the official ``common.GymWrapper`` reads:
    ``reset() → obs``, ``step(action) → (obs, reward, done, info)``, ``observation_space`` (a
    ``Dict``, so the key stays ``vector``) and ``action_space`` (``Discrete``, or ``Box`` in
    [-1, 1], which the official ``NormalizeAction`` leaves as it is and Reverie's env rescales).
    ``info["is_terminal"]`` is the env's ``terminated``: a truncation ends the episode
    (``done``) without being terminal, as in Reverie."""

    def __init__(self, env: Any):
        import gymnasium

        self.env = env
        self.observation_space = gymnasium.spaces.Dict(dict(env.obs_space))
        self.action_space = env.act_space

    def _obs(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {key: obs[key] for key in self.env.obs_space}

    def reset(self) -> dict[str, np.ndarray]:
        return self._obs(self.env.reset())

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, dict[str, bool]]:
        obs = self.env.step(action)
        return self._obs(obs), obs["reward"], obs["is_last"], {"is_terminal": obs["is_terminal"]}


class TimingOutput:
    """An official logger output: ``{"step", "time", "pid"}`` per write into ``timing.jsonl``
    (the official ``metrics.jsonl`` has no time); ``pid`` tells one sitting from the next."""

    def __init__(self, logdir: Path):
        self.path = Path(logdir) / "timing.jsonl"

    def __call__(self, summaries: list) -> None:
        step = max(s for s, _, _ in summaries)
        with self.path.open("a") as file:
            file.write(json.dumps({"step": int(step), "time": time.time(), "pid": os.getpid()}) + "\n")


def scalars_only(output: Callable[[list], None]) -> Callable[[list], None]:
    """An output fed only the scalar summaries (drops the vector "video" of ``log_keys_video``)."""
    return lambda summaries: output([s for s in summaries if np.ndim(s[2]) == 0])


def official_shims() -> Any:
    """Import ``tests.parity.official`` (its shims make the 2021 code import under TF 2.15)
    and give its fake ``gym`` a ``spaces.Box``; returns that module (``numpy_bool``)."""
    import gymnasium

    from tests.parity import official

    sys.modules["gym"].spaces.Box = gymnasium.spaces.Box
    return official


def truncate_jsonl(path: Path, upto_step: int) -> None:
    """Drop the lines logged after ``upto_step`` (and torn ones): a resumed official run counts
    its steps again from its stored episodes and logs those steps anew."""
    if path.exists():
        rows = [row for row in read_jsonl(path) if row.get("step", math.inf) <= upto_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def official_run(task: str, seed: int, steps: int, logdir: Path, threads: int, sets: list[str]) -> int:
    """The official side of one run (in ``.venv-parity``): ``dreamerv2.api.train`` on Reverie's
    env for ``task``, with the config that ``MAPPING`` derives from the Reverie run's."""
    import random

    import tensorflow as tf

    if threads:  # before TF starts its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    config, updates = resolve(task, seed, steps, threads, sets)
    official = official_shims()
    import common
    from dreamerv2 import api

    from reverie.envs import make_env

    ocfg = api.defaults.update({**updates, "logdir": str(logdir)})
    tf.config.run_functions_eagerly(not ocfg.jit)  # as the official train.py; official.py set eager
    tf.keras.mixed_precision.set_global_policy("float32")  # precision 32
    # TF is left unseeded, as the official train.py leaves it: under a global seed every new
    # trace of a tf.function starts its random ops at the same draws (a trial's policy took
    # the same first action in both of its traces).
    random.seed(seed), np.random.seed(seed)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "reverie_config.yaml").write_text(config.to_yaml())  # the Reverie config it mirrors
    stored = common.replay.count_episodes(logdir / "train_episodes")[1] * ocfg.action_repeat
    for name in ("metrics.jsonl", "timing.jsonl"):
        truncate_jsonl(logdir / name, stored)
    outputs = [common.TerminalOutput(), common.JSONLOutput(logdir),
               scalars_only(common.TensorBoardOutput(str(logdir))), TimingOutput(logdir)]
    started = time.time()
    with official.numpy_bool():  # GymWrapper's spaces and the replay use np.bool
        api.train(OldGymEnv(make_env(config, "train")), ocfg, outputs)
    (logdir / "done.json").write_text(json.dumps({"steps": steps, "seconds": round(time.time() - started, 1),
                                                  "finished": now()}) + "\n")
    return 0


# --------------------------------------------------------------------------- running the study


@dataclass(frozen=True)
class Study:
    """What ``run`` and ``report`` share: tasks, seeds, steps per task, folders, executables."""

    tasks: list[str]
    seeds: dict[str, list[int]]
    steps: dict[str, int]
    workdir: Path
    out: Path
    jobs: int = 2
    threads: int = 1
    sets: tuple[str, ...] = ()
    reverie: Path = Path(".venv/bin/reverie")  # paths relative to the repository root (the runs' cwd)
    official_python: Path = Path(".venv-parity/bin/python")

    def logdir(self, task: str, side: str, seed: int) -> Path:
        return self.workdir / task / side / str(seed)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def command(study: Study, task: str, side: str, seed: int) -> list[str]:
    """The command line of one run."""
    steps, logdir = study.steps[task], study.logdir(task, side, seed)
    if side == "official":
        return [str(study.official_python), "-m", "benchmarks.learning_parity", "official-run", "--task", task,
                "--seed", str(seed), "--steps", str(steps), "--logdir", str(logdir), "--threads",
                str(study.threads), *[arg for item in study.sets for arg in ("--set", item)]]
    settings = reverie_settings(task, steps, study.threads, list(study.sets))
    return [str(study.reverie), "train", "--task", task, "--preset", TASKS[task].presets, "--seed", str(seed),
            "--steps", str(steps), "--logdir", str(logdir), *[arg for item in settings for arg in ("--set", item)]]


def finished(side: str, logdir: Path, steps: int) -> bool:
    """Reverie: ``status.json`` says finished at ``steps`` or more; official: ``done.json``
    (written when ``api.train`` returned) for ``steps`` or more."""
    name = "status.json" if side == "reverie" else "done.json"
    try:
        info = json.loads((logdir / name).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (info.get("state") == "finished" and info.get("step", 0) >= steps) if side == "reverie" \
        else info.get("steps", 0) >= steps


def run_one(study: Study, task: str, side: str, seed: int) -> int:
    """One run as a subprocess, its output in ``<logdir>/harness.log``; ``harness.json`` keeps
    the command, exit code and wall time. A finished logdir is skipped."""
    logdir, steps = study.logdir(task, side, seed), study.steps[task]
    if finished(side, logdir, steps):
        print(f"{now()} skip {task} {side} seed {seed}: finished", flush=True)
        return 0
    if STOP.is_set():
        return -signal.SIGTERM
    logdir.mkdir(parents=True, exist_ok=True)
    argv = command(study, task, side, seed)
    print(f"{now()} start {task} {side} seed {seed}", flush=True)
    threads = {name: str(study.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if study.threads}
    env = {**os.environ, **threads, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.time()
    with open(logdir / "harness.log", "a") as log:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        CHILDREN.append(child)
        code = child.wait()
    info = {"command": argv, "returncode": code, "seconds": round(time.time() - started, 1), "ended": now(),
            "log": str(logdir / "harness.log")}
    (logdir / "harness.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{now()} {task} {side} seed {seed}: exit {code} after {info['seconds']:.0f} s", flush=True)
    return code


def write_plan(study: Study) -> None:
    """``<workdir>/<task>/study.json``: steps, seeds and the command of each run, for ``report``."""
    for task in study.tasks:
        folder = study.workdir / task
        folder.mkdir(parents=True, exist_ok=True)
        runs = {side: {str(seed): command(study, task, side, seed) for seed in study.seeds[task]} for side in SIDES}
        plan = {"task": task, "steps": study.steps[task], "seeds": study.seeds[task], "commands": runs,
                "threads": study.threads, "jobs": study.jobs, "sets": list(study.sets)}
        (folder / "study.json").write_text(json.dumps(plan, indent=1) + "\n")


def stop(*_: Any) -> None:
    """Stop the study (SIGTERM, Ctrl-C): end the running runs, start no other; rerun to resume."""
    STOP.set()
    for child in CHILDREN:
        child.terminate()


def run_study(study: Study) -> int:
    """Every (task, seed, side), ``jobs`` at a time: the two sides of one seed side by side,
    so that they share the machine's load. Returns 1 if any run failed, else 0."""
    for task in study.tasks:  # a setting with no official counterpart stops here, before any run
        resolve(task, study.seeds[task][0], study.steps[task], study.threads, list(study.sets))
    write_plan(study)
    queue = [(task, side, seed) for task in study.tasks for seed in study.seeds[task] for side in SIDES]
    signal.signal(signal.SIGTERM, stop)
    with ThreadPoolExecutor(study.jobs) as pool:
        try:
            codes = list(pool.map(lambda job: run_one(study, *job), queue))
        except KeyboardInterrupt:
            stop()  # before the pool's exit waits: the queued runs then return at once
            raise
    failed = sum(code != 0 for code in codes)
    print(f"{now()} {len(queue) - failed} of {len(queue)} runs finished"
          + ("; stopped: the same command resumes the study" if STOP.is_set() else
             "; `python -m benchmarks.learning_parity report` (same options) writes the results"), flush=True)
    return 1 if failed else 0


# --------------------------------------------------------------------------- reading the runs


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (a torn line, as a killed run leaves, is skipped)."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def action_repeat(side: str, logdir: Path) -> int:
    """Frames per agent step (the official logs count frames: step × action_repeat)."""
    if side == "reverie":
        return 1  # Reverie's metrics.jsonl "step" is in agent steps already
    import yaml

    path = logdir / "config.yaml"
    return int(yaml.safe_load(path.read_text()).get("action_repeat", 1)) if path.exists() else 1


def episodes(side: str, logdir: Path) -> np.ndarray:
    """Training episodes ``[N, 2]``: (agent step at the episode's end, return). Reverie logs
    ``episode/return``; the official loop ``return`` (its ``per_episode``)."""
    key = "episode/return" if side == "reverie" else "return"
    repeat = action_repeat(side, logdir)
    rows = [(row["step"] / repeat, row[key]) for row in read_jsonl(logdir / "metrics.jsonl") if key in row]
    return np.array(rows, np.float64).reshape(-1, 2)


def timing(side: str, logdir: Path) -> list[tuple[float, float, int]]:
    """``(agent step, wall seconds, sitting)`` per log line: Reverie's ``time`` runs on across
    sittings (one sequence); the official ``timing.jsonl`` marks each sitting by its pid."""
    if side == "reverie":
        return [(row["step"], row["time"], 0) for row in read_jsonl(logdir / "metrics.jsonl") if "time" in row]
    repeat = action_repeat(side, logdir)
    return [(row["step"] / repeat, row["time"], row["pid"]) for row in read_jsonl(logdir / "timing.jsonl")]


def seconds_per_1k(points: list[tuple[float, float, int]], prefill: int, steps: int) -> float | None:
    """Wall seconds per 1,000 agent steps after prefill: the sum of the time between consecutive
    log lines of one sitting, both after the prefill (so neither the pretraining updates nor the
    official graph tracing count) and at most ``steps``, over the steps between them."""
    kept = [p for p in points if prefill < p[0] <= steps]
    pairs = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(kept, kept[1:]) if a[2] == b[2] and b[0] > a[0]]
    total_steps = sum(p[0] for p in pairs)
    return 1000 * sum(p[1] for p in pairs) / total_steps if total_steps else None


STOPPED = (-signal.SIGTERM, -signal.SIGINT)  # exit codes of a run stopped with the study, which resumes it


def run_state(side: str, logdir: Path, steps: int) -> str:
    """``finished``; ``crashed`` (a non-zero exit in ``harness.json`` other than being stopped
    by SIGTERM or SIGINT); ``running or stopped`` (started, then stopped, or no exit recorded
    yet); or ``missing``."""
    if finished(side, logdir, steps):
        return "finished"
    try:
        info = json.loads((logdir / "harness.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "running or stopped" if logdir.exists() else "missing"
    return "crashed" if info.get("returncode") and info["returncode"] not in STOPPED else "running or stopped"


# --------------------------------------------------------------------------- statistics


def bin_curve(points: np.ndarray, steps: int, bins: int = BINS) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's returns on the common grid: ``bins`` equal stretches of ``[0, steps]``, each the
    mean return of the episodes that end in it, empty ones interpolated linearly between their
    neighbours (held flat before the first and after the last). Returns (bin centres, curve),
    or None without an episode up to ``steps``."""
    points = points[points[:, 0] <= steps]
    if not len(points):
        return None
    edges = np.linspace(0, steps, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    index = np.clip(np.searchsorted(edges, points[:, 0], side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=points[:, 1], minlength=bins)
    full = counts > 0
    curve = np.interp(centres, centres[full], sums[full] / counts[full])
    return centres, curve


def area(curve: np.ndarray) -> float:
    """The area under a binned return curve divided by its steps: the mean of its equal bins."""
    return float(np.mean(curve))


def final_score(points: np.ndarray, steps: int, fraction: float = FINAL_FRACTION) -> float | None:
    """The mean return of the episodes that end in the last ``fraction`` of the steps."""
    last = points[(points[:, 0] > (1 - fraction) * steps) & (points[:, 0] <= steps), 1]
    return float(last.mean()) if len(last) else None


def bootstrap_diff_ci(official: list[float], reverie: list[float], resamples: int = RESAMPLES,
                      seed: int = 0, level: float = 0.95) -> list[float] | None:
    """The percentile bootstrap interval of mean(reverie) − mean(official): the seeds of each
    side resampled with replacement, ``resamples`` times, with a fixed RNG seed."""
    if not official or not reverie:
        return None
    rng = np.random.default_rng(seed)
    a, b = np.asarray(official, np.float64), np.asarray(reverie, np.float64)
    means_a = a[rng.integers(len(a), size=(resamples, len(a)))].mean(1)
    means_b = b[rng.integers(len(b), size=(resamples, len(b)))].mean(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means_b - means_a, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; NaN with one value) of the values that are not None."""
    kept = np.array([v for v in values if v is not None], np.float64)
    if not len(kept):
        return math.nan, math.nan
    return float(kept.mean()), float(kept.std(ddof=1)) if len(kept) > 1 else math.nan


# --------------------------------------------------------------------------- the report


def side_summary(study: Study, task: str, side: str, prefill: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One side of one task: per finished seed its area and final score, the mean wall time
    per 1,000 steps, the crashed and unfinished runs (never averaged in); and the binned curves."""
    steps = study.steps[task]
    out: dict[str, Any] = {"seeds": [], "auc": [], "final": [], "sec_per_1k_steps": None,
                           "crashed": [], "unfinished": []}
    curves, rates = [], []
    for seed in study.seeds[task]:
        logdir = study.logdir(task, side, seed)
        state = run_state(side, logdir, steps)
        if state != "finished":
            entry = {"seed": seed, "state": state, "log": str(logdir / "harness.log")}
            out["crashed" if state == "crashed" else "unfinished"].append(entry)
            continue
        points = episodes(side, logdir)
        binned = bin_curve(points, steps)
        out["seeds"].append(seed)
        out["auc"].append(area(binned[1]) if binned else None)
        out["final"].append(final_score(points, steps))
        curves += [binned[1]] if binned else []
        rates.append(seconds_per_1k(timing(side, logdir), prefill, steps))
    known = [r for r in rates if r is not None]
    out["sec_per_1k_steps"] = float(np.mean(known)) if known else None
    return out, curves


def prefill_of(study: Study, task: str) -> int:
    config, _ = resolve(task, study.seeds[task][0], study.steps[task], study.threads, list(study.sets))
    return config.run.prefill


def task_summary(study: Study, task: str) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """``summary.json``'s entry of one task, and each side's binned curves."""
    prefill = prefill_of(study, task)
    entry: dict[str, Any] = {"steps": study.steps[task]}
    curves = {}
    for side in SIDES:
        entry[side], curves[side] = side_summary(study, task, side, prefill)
    aucs = {side: [a for a in entry[side]["auc"] if a is not None] for side in SIDES}
    entry["auc_diff_ci95"] = bootstrap_diff_ci(aucs["official"], aucs["reverie"])
    return entry, curves


LABELS = {"official": "official DreamerV2 (TF2, api.train)", "reverie": "Reverie (reverie train)"}
COLOURS = {"official": "tab:orange", "reverie": "tab:blue"}


def plot_task(task: str, steps: int, prefill: int, curves: dict[str, list[np.ndarray]], path: Path) -> None:
    """Both sides' mean training return ± sample std over seeds against agent steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = (np.linspace(0, steps, BINS + 1)[:-1] + np.linspace(0, steps, BINS + 1)[1:]) / 2
    figure, axis = plt.subplots(figsize=(7, 4))
    for side in SIDES:
        if not curves[side]:
            continue
        stack = np.stack(curves[side])
        mean = stack.mean(0)
        axis.plot(grid, mean, color=COLOURS[side], label=f"{LABELS[side]}, n = {len(stack)} seeds")
        if len(stack) > 1:
            std = stack.std(0, ddof=1)
            axis.fill_between(grid, mean - std, mean + std, color=COLOURS[side], alpha=0.2)
    axis.axvline(prefill, color="grey", linestyle=":", label="end of prefill")
    axis.set(xlabel="agent steps", ylabel="training-episode return", title=f"{task}: mean ± sample std over seeds")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def machine() -> str:
    """The CPU model (/proc/cpuinfo), the core count and ``platform.processor()``."""
    return f"{cpu_model()}, {os.cpu_count()} cores (platform.processor(): {platform.processor()!r})"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if git("status", "--porcelain") else "")


def report(study: Study) -> dict[str, Any]:
    """``summary.json``, ``<name>.png`` per task and ``README.md`` in ``study.out``."""
    study.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"machine": machine(), "tasks": {}}
    for task in study.tasks:
        summary["tasks"][task], curves = task_summary(study, task)
        plot_task(task, study.steps[task], prefill_of(study, task), curves, study.out / f"{TASKS[task].name}.png")
    (study.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (study.out / "README.md").write_text(readme(study, summary))
    print(f"wrote {study.out / 'summary.json'}, README.md and {len(study.tasks)} figures")
    return summary


# Where the two loops differ in ways the table cannot express (README "Differences").
DIFFERENCES = [
    "Prefill to policy: the official loop resets the env when prefill ends (`driver.reset()`), abandoning "
    "the running random episode (its replay then appends the next episode to that episode's stored steps); "
    "Reverie continues the running episode under the policy.",
    "Seeds: the official replay samples with an unseeded `np.random.RandomState()` and the official "
    "train.py does not seed TF (the driver does not either: under `tf.random.set_seed` each new trace of a "
    "tf.function repeats its random ops' first draws), so an official run is not reproducible from its seed, "
    "which seeds the env, numpy and random; a Reverie run is.",
    "Prefill without a long enough episode: the official loop stops with an error (its replay samples from "
    "an empty list); Reverie keeps acting at random until an episode of `minlen` steps has finished.",
    "Short episodes: the official replay does not store episodes shorter than `minlen` (nor count their "
    "steps in its totals); Reverie stores them and never samples them. Both train on the same sequences.",
    "Logging: the official loop samples one more batch for `agnt.report` at every log; its resume restarts "
    "the step counter at the steps of the stored episodes (see the script's docstring).",
    "Timing: TF runs in graph mode (`jit: True`), Reverie eagerly in PyTorch; TF's intra- and inter-op pools "
    "and torch get `--threads` threads each. Wall time counts from the first log line after prefill, so "
    "neither the pretraining updates nor the official graph tracing is in it; both sides' runs of a seed run "
    "side by side and share the machine's load.",
]


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def decimals(values: list[float | None]) -> int:
    """Decimals that show a task's returns to about 3 significant digits, at least one: 1 for
    CartPole's 100s and Pendulum's −900s, 3 for Breakout's 0.37 (where 1 would print 0.4 ± 0.0)."""
    largest = max((abs(v) for v in values if v is not None and math.isfinite(v) and v != 0), default=1.0)
    return max(1, 2 - math.floor(math.log10(largest)))


def fmt_mean_std(values: list[float | None], digits: int = 1) -> str:
    mean, std = mean_std(values)
    return fmt(mean, digits) + ("" if math.isnan(std) else f" ± {fmt(std, digits)}")


def result_rows(summary: dict[str, Any]) -> list[str]:
    lines = ["| task | side | seeds | AUC (mean return) | final score | s per 1k steps | not averaged |",
             "|---|---|---|---|---|---|---|"]
    for task, entry in summary["tasks"].items():
        digits = decimals([v for side in SIDES for v in entry[side]["auc"]])
        for side in SIDES:
            part = entry[side]
            left_out = [f"seed {r['seed']} {r['state']} ({r['log']})" for r in part["crashed"] + part["unfinished"]]
            lines.append(f"| {task} | {side} | {', '.join(map(str, part['seeds'])) or '–'} | "
                         f"{fmt_mean_std(part['auc'], digits)} | {fmt_mean_std(part['final'], digits)} | "
                         f"{fmt(part['sec_per_1k_steps'])} | {'; '.join(left_out) or '–'} |")
        ci = entry["auc_diff_ci95"]
        lines.append(f"| {task} | reverie − official, AUC, 95 % bootstrap CI | | "
                     f"{'[' + fmt(ci[0], digits) + ', ' + fmt(ci[1], digits) + ']' if ci else '–'} | | | |")
    return lines


def mapping_cell(item: Row, config: Any) -> str:
    """``reverie value(s) → official value(s)``, or one value where they read the same."""
    from reverie.config import get_value

    mine = [get_value(config, key) for key in item.reverie]
    theirs = item.convert(*mine)
    theirs = () if not item.official else (theirs,) if len(item.official) == 1 else tuple(theirs)
    left, right = ", ".join(map(str, mine)), ", ".join(map(str, theirs))
    return left if not theirs or left == right else f"{left} → {right}"


def mapping_rows(study: Study) -> list[str]:
    """The hyper-parameter table: each ``MAPPING`` row with its values per task."""
    configs = {task: resolve(task, study.seeds[task][0], study.steps[task], study.threads, list(study.sets))[0]
               for task in study.tasks}
    lines = ["| Reverie key | official key | " + " | ".join(study.tasks) + " |", "|---" * (len(study.tasks) + 2) + "|"]
    for item in MAPPING:
        official = ", ".join(item.official) or "(hard-coded there: must match)"
        lines.append(f"| {', '.join(item.reverie)} | {official} | "
                     + " | ".join(mapping_cell(item, configs[task]) for task in study.tasks) + " |")
    fixed = ", ".join(f"`{key}: {value}`" for key, value in OFFICIAL_FIXED.items())
    return [*lines, "", f"Official keys set by the study: {fixed}."]


def readme(study: Study, summary: dict[str, Any]) -> str:
    """The study's README: what was run, the results table, figures, commands, the table of
    hyper parameters and the differences between the loops."""
    plan = {task: json.loads((study.workdir / task / "study.json").read_text())
            for task in study.tasks if (study.workdir / task / "study.json").exists()}
    commands = [f"- {task}, {side}: `{' '.join(p['commands'][side][str(p['seeds'][0])])}`"
                for task, p in plan.items() for side in SIDES]
    figures = [f"![{task}]({TASKS[task].name}.png)" for task in study.tasks]
    return "\n".join([
        "# Learning parity: the official DreamerV2 loop and `reverie train`", "",
        f"Written {now()} by `python -m benchmarks.learning_parity report` (commit {commit()}) on {summary['machine']}; "
        f"runs in `{study.workdir}`, {study.jobs} at a time, {study.threads} thread(s) each. "
        + "; ".join(f"{t}: {study.steps[t]:,} steps, seeds {', '.join(map(str, study.seeds[t]))}" for t in study.tasks)
        + ".",
        "", "Training-episode return against agent steps, binned onto "
        f"{BINS} equal stretches; AUC = the area under a run's binned curve divided by its steps (a mean return); "
        "final score = mean return of the episodes in the last 10 % of the steps; mean ± sample std over seeds. "
        "The CI resamples the seeds of each side with replacement (10,000 times, RNG seed 0). `summary.json` "
        "has every seed's numbers.", "", *result_rows(summary), "", *figures, "",
        "## Commands (seed 0; the others differ only in `--seed` and `--logdir`)", "", *commands, "",
        "## Hyper parameters (one table, `MAPPING`: the official config is computed from Reverie's)", "",
        *mapping_rows(study), "", "## Differences the table cannot express", "",
        *[f"- {text}" for text in DIFFERENCES], ""])


# --------------------------------------------------------------------------- command line


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: non-negative integers, no repeats."""
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() for item in items):
        raise StudyError(f"--seeds {text!r} does not parse; give non-negative integers separated by commas, e.g. 0,1,2")
    seeds = [int(item) for item in items]
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"--seeds {text!r} repeats a seed; give each seed once, e.g. 0,1,2")
    return seeds


def parse_tasks(text: str) -> list[str]:
    tasks = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise StudyError(f"unknown task {', '.join(unknown) or repr(text)}; the study's tasks are {', '.join(TASKS)}")
    return tasks


def check_executables(study: Study) -> None:
    """The two venvs the runs need, each with the command that builds it."""
    if not (ROOT / study.official_python).exists():
        raise StudyError(f"{study.official_python} not found: the official side needs .venv-parity; "
                         "run `make .venv-parity/.installed` (or `make parity`) to build it")
    if not (ROOT / study.reverie).exists():
        raise StudyError(f"{study.reverie} not found; run `make install` to build .venv")


def study_from(args: argparse.Namespace) -> Study:
    if args.steps is not None and args.steps < 1:
        raise StudyError(f"--steps must be at least 1, got {args.steps}")
    if args.jobs < 1 or args.threads < 0:
        raise StudyError("--jobs must be at least 1 and --threads at least 0 (0 = the libraries' default)")
    tasks = parse_tasks(args.tasks)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    return Study(tasks=tasks, seeds={task: seeds or list(TASKS[task].seeds) for task in tasks},
                 workdir=Path(args.workdir), out=Path(args.out), steps={task: args.steps or TASKS[task].steps for task in tasks},
                 jobs=args.jobs, threads=args.threads, sets=tuple(args.set or ()), reverie=Path(args.reverie),
                 official_python=Path(args.official_python))


def with_plan(study: Study, args: argparse.Namespace) -> Study:
    """For ``report``: what ``run`` recorded in ``<workdir>/<task>/study.json`` (each task's steps
    and seeds; ``--set`` items, jobs, threads) where the command line does not say otherwise."""
    plans = {task: json.loads(path.read_text()) for task in study.tasks
             if (path := study.workdir / task / "study.json").exists()}
    if not plans:
        return study
    first = next(iter(plans.values()))
    steps = {task: args.steps or plans.get(task, {}).get("steps", study.steps[task]) for task in study.tasks}
    seeds = {task: study.seeds[task] if args.seeds else plans.get(task, {}).get("seeds", study.seeds[task])
             for task in study.tasks}
    return dataclasses.replace(study, steps=steps, seeds=seeds,
                               sets=tuple(args.set) if args.set else tuple(first["sets"]),
                               jobs=first["jobs"], threads=first["threads"])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m benchmarks.learning_parity", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name, text in (("run", "train both sides for every task and seed"),
                       ("report", "summary.json, figures and README from the runs (run's options are accepted)")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
        sub.add_argument("--seeds", default=None,
                         help="comma-separated, for every task (run: each task's own, TASKS; report: the run's)")
        sub.add_argument("--steps", type=int, default=None, help="agent steps per run (default: per task, TASKS)")
        sub.add_argument("--jobs", type=int, default=2, help="runs at a time")
        sub.add_argument("--threads", type=int, default=1, help="threads per run: torch, TF, OpenMP (0 = default)")
        sub.add_argument("--set", action="append", metavar="KEY=VALUE", help="a Reverie override for both sides")
        sub.add_argument("--workdir", default="runs/learning_parity")
        sub.add_argument("--out", default="benchmarks/results/learning_parity")
        sub.add_argument("--reverie", default=".venv/bin/reverie", help="the `reverie` executable")
        sub.add_argument("--official-python", default=".venv-parity/bin/python", help="python of .venv-parity")
    one = commands.add_parser("official-run", help="(internal) the official side of one run, in .venv-parity")
    one.add_argument("--task", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--logdir", required=True)
    one.add_argument("--threads", type=int, default=1)
    one.add_argument("--set", action="append", metavar="KEY=VALUE")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "official-run":
            parse_tasks(args.task)
            return official_run(args.task, args.seed, args.steps, Path(args.logdir), args.threads, args.set or [])
        study = study_from(args)
        if args.command == "run":
            check_executables(study)
            return run_study(study)
        report(with_plan(study, args))
        return 0
    except StudyError as error:
        print(f"learning_parity: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
