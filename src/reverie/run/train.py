"""`reverie train`: prefill, act, learn, log, evaluate, checkpoint; resume on an existing logdir.

Exact resume: everything that influences later numbers is in the checkpoint (networks,
optimizers, slow critic, counters, RNG states, replay bookkeeping, the environment's state,
the current observation and policy state, the metric accumulators). Evaluation and videos
run under a forked torch RNG, so doing them (or not) never shifts the training stream.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reverie import runtime
from reverie.config import Config, load_config, load_config_file, model_changes, validate
from reverie.errors import CheckpointError, RunError, describe_os_error
from reverie.logging import MetricsLogger, Progress, save_video, truncate_metrics, write_status
from reverie.run.driver import Driver, Episode
from reverie.utils import isolated_rng, seed_everything

DEFAULT_PRESETS = {"atari": "atari", "dmc": "dmc", "gym": "gym"}


def cli_train(args: argparse.Namespace) -> int:
    config, logdir = resolve_run_config(args)
    summary = train(config, logdir)
    print(f"\nrun finished: {summary['step']:,} agent steps ({summary['frames']:,} frames)")
    print(f"  metrics:     {logdir / 'metrics.jsonl'}   (tensorboard --logdir {logdir})")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  videos:      {logdir / 'videos'}")
    return 0


def resolve_run_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The run's config: from the logdir when resuming (refusing model changes), else from
    presets + overrides. CLI flags ``--task/--seed/--steps`` are overrides of their keys."""
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"run.steps={int(args.steps)}")
    logdir = Path(args.logdir) if args.logdir else None
    saved = logdir / "config.yaml" if logdir else None
    if saved is not None and saved.exists():
        old = load_config_file(saved)
        overrides.append(f"task={args.task or old.task}")
        overrides.append(f"seed={old.seed if args.seed is None else args.seed}")
        new = load_config(args.preset, overrides) if args.preset else load_config(None, overrides, base=old.to_dict())
        changed = model_changes(old, new) + (["seed"] if new.seed != old.seed else [])
        if changed:
            details = ", ".join(f"{k}" for k in changed)
            raise CheckpointError(
                f"{logdir} holds a run whose model/data settings differ from this command's ({details}); "
                f"resuming would change the model. Use a new --logdir, or drop those overrides to resume."
            )
        new.logdir = str(logdir)
        return new, logdir
    if args.task:
        overrides.append(f"task={args.task}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    preset = args.preset
    if preset is None:
        task = args.task or "atari_pong"
        preset = DEFAULT_PRESETS.get(task.split("_", 1)[0], "atari")
    config = load_config(preset, overrides)
    logdir = logdir or Path("runs") / config.task / str(config.seed)
    config.logdir = str(logdir)
    return config, logdir


@dataclasses.dataclass
class LoopState:
    """Counters and accumulators of the loop; all of it goes into the checkpoint."""

    step: int = 0
    episodes: int = 0
    pretrained: bool = False
    wall_seconds: float = 0.0
    last_return: float | None = None
    last_eval: float | None = None
    sums: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # name -> [sum, count]

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            total = self.sums.setdefault(key, [0.0, 0])
            total[0] += value
            total[1] += 1

    def means(self) -> dict[str, float]:
        means = {f"train/{k}": s / n for k, (s, n) in self.sums.items() if n}
        self.sums = {}
        return means


def train(config: Config, logdir: Path, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume) the run in ``logdir`` until ``config.run.steps`` agent steps.

    Refused before any work (``ConfigError``, ``RunError``): a config breaking its rules, a
    ``logdir`` that is a file or cannot be created or written. Nothing in an existing run
    directory changes until the env, the agent, the checkpoint and the replay have loaded.
    A file-system fault during the run (a full disk) stops it with a ``RunError`` naming the
    fault, the last complete checkpoint and the command that resumes from it.
    """
    logdir = Path(logdir)
    validate(config)
    check_logdir(logdir)
    try:
        return _train(config, logdir, quiet)
    except OSError as error:
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


def stopped_by(error: OSError, logdir: Path) -> RunError:
    """One line for a run stopped by a file-system fault: what failed, the last complete
    checkpoint (atomic, so never a half-written one) and the command that resumes from it."""
    from reverie.checkpoint import list_checkpoints

    complete = list_checkpoints(logdir) if logdir.is_dir() else []
    last = (f"the last complete checkpoint is step {int(complete[-1].name):,} ({complete[-1]})" if complete
            else "there is no complete checkpoint yet, so a resume starts from step 0")
    failed = f"writing {error.filename} failed ({error.strerror})" if error.filename else describe_os_error(error)
    return RunError(f"the run stopped: {failed}; {last}; free space or fix the fault, "
                    f"then resume with: reverie train --logdir {logdir}")


def _train(config: Config, logdir: Path, quiet: bool) -> dict[str, Any]:
    from reverie.agent import Agent
    from reverie.checkpoint import load_checkpoint
    from reverie.envs import make_env
    from reverie.replay import Replay

    runtime.configure(config)  # a run owns its process: threads, memory reuse, TF32
    seed_everything(config.seed, config.deterministic)
    env = make_env(config, "train")
    try:
        agent = Agent(config, env.obs_space, env.act_space)
        driver = Driver(env, agent, name=config.task)
        run = config.run
        ckpt = load_checkpoint(logdir, map_location=agent.device)
        # strict: a corrupt chunk the checkpoint needs stops the resume (naming the file)
        # before anything on disk changes, instead of training on a replay that differs.
        replay_args = dict(capacity=config.replay.capacity, chunk=config.replay.chunk, seed=config.seed, strict=True)
        loop = LoopState()
        if ckpt is not None:
            loop = _restore(ckpt, agent, driver)
            replay = Replay.load(logdir / "replay", upto_step=ckpt.meta["replay"]["step"], **replay_args)
            replay.load_state_dict(ckpt.meta["replay"])
        else:
            replay = Replay.load(logdir / "replay", upto_step=0, **replay_args)  # clears a run killed before its first checkpoint
        config.save(logdir / "config.yaml")
        truncate_metrics(logdir / "metrics.jsonl", loop.step)
        logger = MetricsLogger(logdir, config.env.action_repeat)
    except BaseException:
        env.close()
        raise

    progress = Progress(run.steps, config.env.action_repeat)
    start_time, start_step, updates_at_start = time.time(), loop.step, agent.updates
    last_log = (time.time(), loop.step, agent.updates)
    last_batch = None
    checkpoint_path = ckpt.path if ckpt is not None else None
    write_status(logdir, **_status(loop, agent, run, "running"))

    def learn(times: int) -> None:
        nonlocal last_batch
        for _ in range(times):
            last_batch = replay.sample(config.replay.batch, config.replay.length, config.replay.prioritize_ends)
            loop.add(agent.train(last_batch))

    try:
        while loop.step < run.steps:
            if driver.obs is None:
                replay.add(driver.reset())
            mode = "random" if loop.step < run.prefill else "train"
            transition, finished = driver.step(mode)
            replay.add(transition)
            loop.step += 1
            step = loop.step
            if finished is not None:
                loop.episodes += 1
                loop.last_return = finished.ret
                logger.write(step, {"episode/return": finished.ret, "episode/length": finished.length,
                                    "episodes": loop.episodes}, _elapsed(loop, start_time))
            if step >= run.prefill and replay.num_steps >= config.replay.length:
                if not loop.pretrained:
                    learn(run.pretrain)
                    loop.pretrained = True
                elif step % run.train_every == 0:
                    learn(run.train_steps)
            if step % run.log_every == 0:
                now = time.time()
                fps = (step - last_log[1]) / max(now - last_log[0], 1e-9)
                ups = (agent.updates - last_log[2]) / max(now - last_log[0], 1e-9)
                last_log = (now, step, agent.updates)
                logger.write(step, {**loop.means(), "fps": fps, "updates_per_second": ups,
                                    "replay/steps": replay.num_steps}, _elapsed(loop, start_time))
                write_status(logdir, **_status(loop, agent, run, "running", start_time))
                video_every = run.video_every or run.log_every
                if last_batch is not None and step % video_every == 0:
                    _save_openl(agent, last_batch, logdir / "videos" / f"openl_{step:012d}.gif", config.seed + step)
            if run.eval_every and step % run.eval_every == 0:
                _evaluate_during_training(agent, config, loop, logger, start_time)
            if step % run.checkpoint_every == 0 or step == run.steps:
                checkpoint_path = _save(logdir, loop, agent, driver, replay, start_time)
            if not quiet:
                elapsed = max(time.time() - start_time, 1e-9)
                progress.update(step, (step - start_step) / elapsed, (agent.updates - updates_at_start) / elapsed,
                                loop.last_return, loop.last_eval, force=step == run.steps)
    except BaseException:
        progress.close()
        logger.close(quiet=True)  # the error in flight is the one to report
        env.close()
        raise
    progress.close()
    logger.close()
    env.close()
    if checkpoint_path is None:  # run.steps reached before this invocation did anything
        checkpoint_path = _save(logdir, loop, agent, driver, replay, start_time)
    write_status(logdir, **_status(loop, agent, run, "finished", start_time))
    return {"step": loop.step, "frames": loop.step * config.env.action_repeat,
            "checkpoint": str(checkpoint_path), "last_eval": loop.last_eval}


def _elapsed(loop: LoopState, start_time: float) -> float:
    return loop.wall_seconds + time.time() - start_time


def _status(loop: LoopState, agent, run, state: str, start_time: float | None = None) -> dict[str, Any]:
    return {
        "state": state, "step": loop.step, "frames": loop.step * agent.config.env.action_repeat,
        "updates": agent.updates, "total_steps": run.steps,
        "wall_seconds": round(loop.wall_seconds + (time.time() - start_time if start_time else 0.0), 1),
        "last_eval_return": loop.last_eval, "last_episode_return": loop.last_return,
        "torch_threads": torch.get_num_threads(),  # what `threads` / OMP_NUM_THREADS gave the run
    }


def _evaluate_during_training(agent, config: Config, loop: LoopState, logger: MetricsLogger, start_time: float) -> None:
    from reverie.run.evaluate import run_episodes

    episodes = run_episodes(agent, config, config.run.eval_episodes, seed=config.seed + loop.step)
    for episode in episodes:
        logger.write(loop.step, {"eval/return": episode.ret, "eval/length": episode.length}, _elapsed(loop, start_time))
    loop.last_eval = float(np.mean([e.ret for e in episodes]))


def _save_openl(agent, batch: dict[str, np.ndarray], path: Path, seed: int) -> None:
    with isolated_rng(seed):
        video = agent.report(batch).get("openl")
    if video is not None:
        save_video(path, video)


def _save(logdir: Path, loop: LoopState, agent, driver: Driver, replay, start_time: float) -> Path:
    from reverie.checkpoint import capture_rng, save_checkpoint

    replay.flush()
    rng_tensors, rng_meta = capture_rng()
    # Mid-episode the env's whole state; at an episode end what its next reset draws from,
    # so the resumed run's next episode is the uninterrupted run's, not episode 1 again.
    env_state = driver.env.get_state() if driver.obs is not None else driver.env.get_reset_state()
    env_tensors, env_meta = _split_arrays(env_state)
    obs_tensors, obs_meta = _split_arrays(driver.obs)
    tensors = {
        "agent": agent.state_dict(), "rng": rng_tensors, "env": env_tensors, "obs": obs_tensors,
        "policy_state": _to_device(driver.policy_state, "cpu"),
    }
    meta = {
        "loop": {**dataclasses.asdict(loop), "wall_seconds": _elapsed(loop, start_time)},
        "episode": dataclasses.asdict(driver.episode), "rng": rng_meta, "env": env_meta, "obs": obs_meta,
        "replay": replay.state_dict(), "mid_episode": driver.obs is not None,
    }
    return save_checkpoint(logdir, loop.step, tensors, meta, keep=agent.config.run.keep_checkpoints)


def _restore(ckpt, agent, driver: Driver) -> LoopState:
    from reverie.checkpoint import restore_rng

    tensors, meta = ckpt.tensors, ckpt.meta
    agent.load_state_dict(tensors["agent"])
    loop = LoopState(**meta["loop"])
    env_state = _merge_arrays(tensors.get("env"), meta["env"])
    if meta["mid_episode"] and env_state is not None:  # the env continues its episode exactly
        driver.env.set_state(env_state)
        driver.obs = _merge_arrays(tensors["obs"], meta["obs"])
        driver.policy_state = _to_device(tensors["policy_state"], agent.device)
        driver.episode = Episode(**meta["episode"])
    elif meta["mid_episode"]:  # the env cannot restore its state: a new episode starts (documented)
        driver.obs = None
    elif env_state is not None:  # between episodes: the next reset continues the env's random streams
        driver.env.set_reset_state(env_state)
    restore_rng(tensors["rng"], meta["rng"])
    return loop


def _split_arrays(state: Any) -> tuple[Any, Any]:
    """Split a nested dict into (tensors for numpy arrays, JSON-able rest)."""
    if state is None:
        return None, None
    if isinstance(state, dict):
        pairs = {k: _split_arrays(v) for k, v in state.items()}
        return {k: t for k, (t, _) in pairs.items() if t is not None}, {k: m for k, (_, m) in pairs.items()}
    if isinstance(state, (np.ndarray, np.generic)):
        array = np.asarray(state)
        return torch.from_numpy(array.copy()), {"__array__": str(array.dtype)}
    return None, state


def _merge_arrays(tensors: Any, meta: Any) -> Any:
    if meta is None:
        return None
    if isinstance(meta, dict) and "__array__" in meta and len(meta) == 1:
        return tensors.numpy().astype(meta["__array__"])
    if isinstance(meta, dict):
        return {k: _merge_arrays((tensors or {}).get(k), v) for k, v in meta.items()}
    return meta


def _to_device(value: Any, device) -> Any:
    """Detached copies of the tensors in nested dicts/tuples/lists, on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value

