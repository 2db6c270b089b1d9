"""``train(config, logdir)``: prefill, act, learn, log, evaluate, checkpoint; resume on an
existing logdir. ``reverie train`` resolves its arguments into a config in ``reverie.cli``.

Exact resume: every part that influences later numbers owns its state
(``state_dict``/``load_state_dict``) and the checkpoint bundle (``reverie.checkpoint``) holds
them all: the agent (networks, optimizers, slow critic, update count), the driver (the env's
state, the current observation, the policy state, the running episode), the replay's
bookkeeping, the loop's counters and metric means (``LoopState``) and the RNG streams. The
schedules are pure functions of the step (``reverie.run.when``). Evaluation and videos run
under a forked torch RNG, so doing them (or not) never shifts the training stream.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reverie import runtime
from reverie.checkpoint import (
    RngStreams,
    Stateful,
    list_checkpoints,
    load_checkpoint,
    restore_bundle,
    save_bundle,
)
from reverie.config import Config, RunConfig, load_config_file, model_changes, validate
from reverie.errors import CheckpointError, EnvWorkerError, RunError, describe_os_error
from reverie.report.metrics import MetricsLogger, Progress, save_video, truncate_metrics, write_status
from reverie.run.driver import Driver
from reverie.run.when import Before, Every, Once, Ratio
from reverie.utils import Flock, isolated_rng, seed_everything

if TYPE_CHECKING:
    from reverie.contracts import AgentContract
    from reverie.envs import Env
    from reverie.replay import Replay


def train(config: Config, logdir: Path, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) the run in ``logdir`` until ``config.run.steps`` agent steps.

    Refused before any work (``ConfigError``, ``RunError``, ``CheckpointError``): a config
    breaking its rules, a ``logdir`` that is a file or cannot be created or written, a run in
    ``logdir`` whose model, data or seed this config would change (``check_resume``); and,
    once the env and the agent are built, a ``logdir`` that another process is training
    (``hold_run``). Nothing in an existing run directory changes until the env, the agent, the
    checkpoint and the replay have loaded. A file-system fault during the run (a full disk) stops it with a
    ``RunError`` naming the fault, the last complete checkpoint and the command that resumes
    from it. ``status.json`` says how the run ended: "finished"; "stopped" by Ctrl-C or
    SIGTERM (which, while ``train`` runs in the main thread, raises ``runtime.Terminated``, a
    ``KeyboardInterrupt``); or "failed" by an error.

    Returns ``{"step", "frames", "checkpoint", "last_eval"}``.
    """
    logdir = Path(logdir)
    validate(config)
    check_logdir(logdir)
    check_resume(config, logdir)
    warn_envs(config)
    try:
        with runtime.run_settings(config):  # SIGTERM, determinism, ...: each put back after
            return _train(config, logdir, quiet)
    except (OSError, EnvWorkerError) as error:
        raise stopped_by(error, logdir) from None


def check_logdir(logdir: Path) -> None:
    """Refuse a log directory that is a file, or that cannot be created or written."""
    if logdir.exists() and not logdir.is_dir():
        raise RunError(f"--logdir {logdir} is a file, not a directory; give a new directory to start a run "
                       "or a run directory to resume it")
    nearest = logdir
    while not nearest.exists():  # the folder the run directory would be created in
        nearest = nearest.parent
    if not nearest.is_dir():
        raise RunError(f"--logdir {logdir} cannot be created: {nearest} is a file")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as error:
        verb = "written" if nearest == logdir else f"created (in {nearest})"
        raise RunError(f"--logdir {logdir} cannot be {verb}: {error.strerror or error}") from None


def check_resume(config: Config, logdir: Path) -> None:
    """Refuse to resume the run in ``logdir`` with a config that differs from its saved
    ``config.yaml`` in a key that shapes the model or the data (``reverie.config.MODEL_KEYS``:
    the task, the seed, ``env.*``, the world model, actor and critic, the sequence length).
    The one check, for ``reverie train`` and the Python API alike."""
    saved = logdir / "config.yaml"
    if not saved.is_file():
        return
    changed = model_changes(load_config_file(saved), config)
    if changed:
        raise CheckpointError(
            f"{logdir} holds a run whose model/data settings differ from this command's ({', '.join(changed)}); "
            f"resuming would change the model. Use a new --logdir, or drop those overrides to resume.")


def warn_envs(config: Config) -> None:
    """``run.envs`` beyond what the machine runs at once: one warning, not a refusal (the envs
    still run, sharing the cores; a user may know better, e.g. envs that wait on I/O)."""
    cores = os.cpu_count() or 1
    if config.env.parallel == "process" and config.run.envs > 2 * cores:
        warnings.warn(f"run.envs = {config.run.envs} worker processes on {cores} cores: they will take turns; "
                      "more workers than twice the cores rarely collect faster, and each holds its env in memory", stacklevel=3)


def stopped_by(error: OSError | EnvWorkerError, logdir: Path) -> RunError:
    """One line for a run stopped by a file-system fault or a failed env worker: what failed,
    the last complete checkpoint (atomic, so never a half-written one) and the command that
    resumes from it."""
    complete = list_checkpoints(logdir) if logdir.is_dir() else []
    last = (f"the last complete checkpoint is step {int(complete[-1].name):,} ({complete[-1]})" if complete
            else "there is no complete checkpoint yet, so a resume starts from step 0")
    if isinstance(error, EnvWorkerError):
        failed, fix = str(error).rstrip("."), "fix the env"
    else:
        failed = f"writing {error.filename} failed ({error.strerror})" if error.filename else describe_os_error(error)
        fix = "free space or fix the fault"
    return RunError(f"the run stopped: {failed}; {last}; {fix}, then resume with: reverie train --logdir {logdir}")


@dataclasses.dataclass
class Mean:
    """The mean of the values added since the last log: ``total / count``."""

    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1


@dataclasses.dataclass
class LoopState:
    """The loop's counters and metric means; a part of the checkpoint bundle."""

    step: int = 0  # agent steps taken
    episodes: int = 0  # training episodes finished
    pretrain: Once = dataclasses.field(default_factory=Once)  # the run.pretrain updates right after prefill
    learn_start: int = -1  # the agent step of those updates; run.train_every counts from the step after it
    wall_seconds: float = 0.0  # wall time of the run's earlier invocations
    last_return: float | None = None  # of the last training episode
    last_eval: float | None = None  # mean return of the last evaluation
    train_metrics: dict[str, Mean] = dataclasses.field(default_factory=dict)  # the agent's metrics since the last log
    started: float = dataclasses.field(default_factory=time.time)  # when this invocation started (not saved)

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.train_metrics.setdefault(key, Mean()).add(value)

    def means(self) -> dict[str, float]:
        """``train/<metric>`` means since the last call, which starts new ones."""
        means = {f"train/{key}": mean.total / mean.count for key, mean in self.train_metrics.items() if mean.count}
        self.train_metrics = {}
        return means

    def elapsed(self) -> float:
        """Wall seconds of the whole run so far, earlier invocations included."""
        return self.wall_seconds + time.time() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "episodes": self.episodes, "pretrained": self.pretrain.done,
                "learn_start": self.learn_start,
                "wall_seconds": self.elapsed(), "last_return": self.last_return, "last_eval": self.last_eval,
                "train_metrics": {key: dataclasses.asdict(mean) for key, mean in self.train_metrics.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.episodes, self.pretrain = state["step"], state["episodes"], Once(state["pretrained"])
        # Checkpoints before learn_start existed trained on multiples of train_every: -1 keeps that.
        self.learn_start = state.get("learn_start", -1)
        self.wall_seconds, self.started = state["wall_seconds"], time.time()
        self.last_return, self.last_eval = state["last_return"], state["last_eval"]
        self.train_metrics = {key: Mean(**mean) for key, mean in state["train_metrics"].items()}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop does what (``reverie.run.when``), from ``config.run``."""

    explore: Before  # act uniformly at random before run.prefill agent steps (the replay's prefill)
    train: Ratio  # run.train_steps updates every run.train_every agent steps, counted from the first policy step
    log: Every  # metrics and status.json
    video: Every  # open-loop video, on log steps (run.video_every; 0 = every log)
    eval: Every  # evaluation episodes (run.eval_every; 0 = never)
    save: Every  # checkpoint (and always at the last step)

    @classmethod
    def of(cls, run: RunConfig) -> Schedule:
        return cls(Before(run.prefill), Ratio(run.train_every, run.train_steps), Every(run.log_every),
                   Every(run.video_every or run.log_every), Every(run.eval_every), Every(run.checkpoint_every))


def _train(config: Config, logdir: Path, quiet: bool) -> dict[str, Any]:
    from reverie.envs import make_envs
    from reverie.envs.parallel import close_all

    runtime.configure(config)  # a run owns its process: threads, memory reuse, TF32
    seed_everything(config.seed)
    envs = make_envs(config, config.run.envs, config.env.parallel)
    try:
        trainer = _open(config, logdir, envs, quiet)
    except BaseException:
        close_all(envs)
        raise
    with trainer.lock:  # the run directory is this process's until the run has ended
        try:
            trainer.run()
            if trainer.checkpoint is None:  # run.steps reached before this invocation did anything
                trainer.save()
        except BaseException as error:
            trainer.close(quiet=True)  # the error in flight is the one to report
            trainer.write_end(error)
            raise
        trainer.close()
        trainer.write_status("finished")
    return {"step": trainer.loop.step, "frames": trainer.loop.step * config.env.action_repeat,
            "checkpoint": str(trainer.checkpoint), "last_eval": trainer.loop.last_eval}


def _open(config: Config, logdir: Path, envs: list[Env], quiet: bool) -> Trainer:
    """Build the agent, driver and replay and restore them from the newest complete checkpoint
    before anything on disk changes; then write the config and drop metric lines logged after
    that checkpoint (the resumed run logs them again)."""
    from reverie.agent import Agent
    from reverie.replay import Replay

    agent = Agent(config, envs[0].obs_space, envs[0].act_space)
    if agent.compiles and not quiet:
        print("compile=true: the first update compiles the model (minutes the first time on a small CPU: 4 min "
              "for gym,cartpole on a 2-core VM; seconds once Inductor has cached it)", flush=True)
    driver = Driver(envs, agent, name=config.task)
    lock = hold_run(logdir)
    try:
        checkpoint = load_checkpoint(logdir, map_location=agent.device)
        # upto_step=0 clears a run killed before its first checkpoint. strict: a corrupt chunk the
        # checkpoint needs stops the resume (naming the file) instead of training on a replay that differs.
        state = checkpoint.meta["replay"] if checkpoint is not None else None
        replay = Replay.load(logdir / "replay", config.replay.capacity, config.replay.chunk, config.seed,
                             upto_step=state["step"] if state else 0, strict=True,
                             running=Replay.running_ids(state) if state else None)  # each env's running episode
        loop = LoopState()
        if checkpoint is not None:
            restore_bundle(checkpoint, bundle(agent, driver, replay, loop))
        config.save(logdir / "config.yaml")
        truncate_metrics(logdir / "metrics.jsonl", loop.step)
    except BaseException:
        lock.release()
        raise
    return Trainer(config, logdir, agent, driver, replay, loop, checkpoint.path if checkpoint else None, quiet, lock)


def hold_run(logdir: Path) -> Flock:
    """The run's lock, taken before anything in ``logdir`` is read: an exclusive ``flock`` on
    the run directory (created here), held until the run ends, so that two processes (a run
    started by hand beside a sweep's, two notebooks) never train one directory at once and
    leave it holding a mix of both. A run killed in any way leaves no lock behind."""
    logdir.mkdir(parents=True, exist_ok=True)
    lock = Flock(logdir)
    for _ in range(5):  # `reverie sweep --status` probes the lock, taking it for microseconds
        if lock.acquire():
            return lock
        time.sleep(0.1)
    raise RunError(f"another process is training {logdir} now (a `reverie train`, a sweep's run or a "
                   f"notebook); let it finish or stop it, then resume with: reverie train --logdir {logdir}; "
                   "or give a new --logdir")


def bundle(agent: AgentContract, driver: Driver, replay: Replay, loop: LoopState) -> dict[str, Stateful]:
    """The parts of a run in its checkpoint, the RNG streams first: ``save_bundle`` captures
    them before any part saves, ``restore_bundle`` restores them after every other part."""
    return {"rng": RngStreams(), "agent": agent, "loop": loop, "replay": replay, "driver": driver}


class Trainer:
    """One invocation of a run: its parts, its schedules, and the loop (``run``)."""

    def __init__(self, config: Config, logdir: Path, agent: AgentContract, driver: Driver, replay: Replay,
                 loop: LoopState, checkpoint: Path | None, quiet: bool, lock: Flock):
        self.config, self.logdir, self.quiet, self.lock = config, logdir, quiet, lock  # lock: hold_run's
        self.agent, self.driver, self.replay, self.loop = agent, driver, replay, loop
        self.when = Schedule.of(config.run)
        self.checkpoint = checkpoint  # the newest complete checkpoint
        self.logger = MetricsLogger(logdir, config.env.action_repeat)
        self.progress = Progress(config.run.steps, config.env.action_repeat)
        self.last_batch: dict[str, np.ndarray] | None = None  # for the open-loop video
        self.start = self.last_log = (time.time(), loop.step, agent.updates)  # (time, step, updates)

    def run(self) -> None:
        """Algorithm 1 of the paper, one round of the envs at a time: act in every env (uniformly
        at random while the replay is prefilled), then take their steps one by one as agent
        steps, as the official driver's per-step callbacks do: store it and, once the replay
        holds a sequence, learn the world model and the actor-critic from replayed sequences;
        log and evaluate as their schedules say. Checkpoints fall between rounds, where every
        env's state is whole (a round of N envs is N agent steps)."""
        loop, when, steps = self.loop, self.when, self.config.run.steps
        self.write_status("running")
        while loop.step < steps:
            save = False
            for index, (transition, finished) in enumerate(self.act(at_random=self.prefilling())):
                step = self.store(index, transition, finished)
                if not self.prefilling():
                    self.learn(self.updates_due(step))
                if when.log(step):
                    self.log(step)
                if when.eval(step):
                    self.evaluate(step)
                save = save or when.save(step) or step >= steps
                self.show_progress(step)
            if save:
                self.save()

    def prefilling(self) -> bool:
        """Whether the loop still fills the replay at random: before ``run.prefill`` agent steps,
        and after them until the replay can give a training sequence (with ``replay.ongoing``
        false, until an episode long enough has finished, as the official prefill). Once learning
        has started it never returns (and the replay's episodes are not scanned each step)."""
        if self.loop.pretrain.done:
            return False
        replay = self.config.replay
        return self.when.explore(self.loop.step) or not self.replay.can_sample(replay.length, replay.ongoing,
                                                                               replay.minlen)

    def updates_due(self, step: int) -> int:
        """After agent step ``step`` of learning: ``run.pretrain`` updates the first time, then
        ``run.train_steps`` on the next step and every ``run.train_every`` after it (the official
        loop's ``Every``, which fires on its first call)."""
        if self.loop.pretrain():
            self.loop.learn_start = step
            self.agent.step = step  # the official tfstep during pretraining: the steps taken so far
            return self.config.run.pretrain
        return self.when.train(step - self.loop.learn_start - 1)

    def act(self, at_random: bool) -> list[tuple[dict[str, Any], Any]]:
        """One round of the envs: every env without an episode starts one (its first step goes
        into the replay), then one policy call acts in all. Returns each env's new step and
        finished episode (or None). The agent's schedules read the steps taken before this
        round, as the official policy sets ``tfstep`` when it acts."""
        self.agent.step = self.loop.step
        for index, first in self.driver.reset_finished():
            self.replay.add(first, worker=index)
        return self.driver.step_all("random" if at_random else "train")

    def store(self, index: int, transition: dict[str, Any], finished: Any) -> int:
        """Env ``index``'s step into the replay as one agent step; a finished episode is counted
        and logged once (with its env index when there are several). Returns the agent step."""
        loop = self.loop
        self.replay.add(transition, worker=index)
        loop.step += 1
        if finished is not None:
            loop.episodes += 1
            loop.last_return = finished.score
            record = {"episode/return": finished.score, "episode/length": finished.length, "episodes": loop.episodes}
            if self.config.run.envs > 1:
                record["episode/env"] = index
            self.logger.write(loop.step, record, loop.elapsed())
        return loop.step

    def learn(self, updates: int) -> None:
        """``updates`` updates of the world model and the actor-critic, each on a new batch."""
        replay = self.config.replay
        for _ in range(updates):
            self.last_batch = self.replay.sample(replay.batch, replay.length, replay.prioritize_ends,
                                                 clip_start=replay.clip_start, ongoing=replay.ongoing,
                                                 minlen=replay.minlen, cross_episodes=replay.cross_episodes)
            self.loop.add(self.agent.train(self.last_batch))

    def log(self, step: int) -> None:
        """The metric means, rates and replay size; status.json; the open-loop video when due."""
        now = time.time()
        seconds = max(now - self.last_log[0], 1e-9)
        rates = {"fps": (step - self.last_log[1]) / seconds,
                 "updates_per_second": (self.agent.updates - self.last_log[2]) / seconds}
        self.last_log = (now, step, self.agent.updates)
        self.logger.write(step, {**self.loop.means(), **rates, "replay/steps": self.replay.num_steps},
                          self.loop.elapsed())
        self.write_status("running")
        if self.last_batch is not None and self.when.video(step):
            path = self.logdir / "videos" / f"openl_{step:012d}.gif"
            with isolated_rng(self.config.seed + step):
                video = self.agent.report(self.last_batch).get("openl")
            if video is not None:
                save_video(path, video)

    def evaluate(self, step: int) -> None:
        """``run.eval_episodes`` episodes on the eval env of this step (``envs.eval_seed``), with
        the actor's mode; with ``run.eval_sample`` the same episodes' seeds again with its samples."""
        from reverie.run.evaluate import run_episodes

        episodes = run_episodes(self.agent, self.config, self.config.run.eval_episodes, step)
        for episode in episodes:
            self.logger.write(step, {"eval/return": episode.score, "eval/length": episode.length},
                              self.loop.elapsed())
        if self.config.run.eval_sample:
            sampled = run_episodes(self.agent, self.config, self.config.run.eval_episodes, step, mode="eval_sample")
            for episode in sampled:
                self.logger.write(step, {"eval/return_sample": episode.score, "eval/length_sample": episode.length},
                                  self.loop.elapsed())
        self.loop.last_eval = float(np.mean([episode.score for episode in episodes]))

    def save(self) -> None:
        self.replay.flush()  # the checkpoint's replay bookkeeping counts only what is on disk
        parts = bundle(self.agent, self.driver, self.replay, self.loop)
        self.checkpoint = save_bundle(self.logdir, self.loop.step, parts, keep=self.config.run.keep_checkpoints)

    def show_progress(self, step: int) -> None:
        if self.quiet:
            return
        seconds = max(time.time() - self.start[0], 1e-9)
        self.progress.update(step, (step - self.start[1]) / seconds, (self.agent.updates - self.start[2]) / seconds,
                             self.loop.last_return, self.loop.last_eval, force=step >= self.config.run.steps)

    def write_status(self, state: str, **end: Any) -> None:
        loop, run = self.loop, self.config.run
        write_status(self.logdir, state=state, step=loop.step, frames=loop.step * self.config.env.action_repeat,
                     updates=self.agent.updates, total_steps=run.steps, wall_seconds=round(loop.elapsed(), 1),
                     last_eval_return=loop.last_eval, last_episode_return=loop.last_return,
                     torch_threads=torch.get_num_threads(),  # what `threads` / OMP_NUM_THREADS gave the run
                     wait=runtime.wait_policy(),  # what `wait` / OMP_WAIT_POLICY gave it
                     **end)

    def write_end(self, error: BaseException) -> None:
        """status.json of a run that ends early: "stopped" (Ctrl-C, SIGTERM) or "failed" (an
        error, named), with the step the resume starts from (the last complete checkpoint's)
        and its command. Best effort: a second fault (the full disk) must not hide the first."""
        stopped = isinstance(error, (KeyboardInterrupt, SystemExit))
        reason = {} if stopped else {"error": " ".join(f"{type(error).__name__}: {error}".split())}
        try:
            self.write_status("stopped" if stopped else "failed", **reason,
                              resume_step=int(self.checkpoint.name) if self.checkpoint else 0,
                              resume=f"reverie train --logdir {self.logdir}")
        except OSError:
            pass

    def close(self, quiet: bool = False) -> None:
        """Close the console line, the metric files (``quiet``: drop their errors) and the env."""
        self.progress.close()
        self.logger.close(quiet=quiet)
        self.driver.close()
