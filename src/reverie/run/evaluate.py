"""Evaluation episodes with ``mode="eval"`` (the mode of the actor's distribution), on an
environment of its own, and `reverie eval` on the newest complete checkpoint of a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reverie import runtime
from reverie.config import Config, load_config_file
from reverie.errors import CheckpointError
from reverie.run.driver import Driver, Episode
from reverie.utils import isolated_rng

if TYPE_CHECKING:
    from reverie.contracts import AgentContract


def run_episodes(agent: AgentContract, config: Config, episodes: int, step: int, video_dir: Path | None = None,
                 tag: str = "eval", mode: str = "eval") -> list[Episode]:
    """Play ``episodes`` full episodes: the evaluation of the agent at agent step ``step``, with
    policy ``mode`` (``eval``: the actor's mode; ``eval_sample``: its samples).

    The eval env and a forked torch RNG are both seeded with ``eval_seed(config.seed, step)``
    (the one rule, in ``reverie.envs.registry``): evaluating never changes the random stream
    of training, so a run's numbers do not depend on how often it was evaluated, and
    ``reverie eval`` on the checkpoint of step S plays the episodes the run's evaluation at S did.
    """
    from reverie.envs import eval_seed, make_env

    env = make_env(config, "eval", step)
    driver = Driver(env, agent)
    results = []
    try:
        with isolated_rng(eval_seed(config.seed, step)):
            for index in range(episodes):
                driver.reset()
                frames = [env.render()] if video_dir else None
                finished = None
                while finished is None:
                    _, finished = driver.step(mode)
                    if frames is not None:
                        frames.append(env.render())
                results.append(finished)
                if frames is not None:
                    from reverie.report.metrics import save_video

                    save_video(video_dir / f"{tag}_{index:03d}.gif", np.stack(frames), fps=30)
    finally:
        env.close()
    return results


# `reverie eval --policy`: (name in eval.jsonl, Driver mode) of each policy played, on the same episode seeds.
POLICIES = {"mode": [("mode", "eval")], "sample": [("sample", "eval_sample")],
            "both": [("mode", "eval"), ("sample", "eval_sample")]}


def cli_eval(args: argparse.Namespace) -> int:
    from reverie.agent import Agent
    from reverie.checkpoint import load_checkpoint
    from reverie.envs import make_env

    logdir = Path(args.logdir)
    if not (logdir / "config.yaml").exists():
        raise CheckpointError(f"{logdir} is not a run directory (no config.yaml); pass the --logdir of a `reverie train` run")
    config = load_config_file(logdir / "config.yaml")
    runtime.prepare_process(config)  # this command's process: dm-control's renderer, the ALE's logger
    runtime.configure(config)
    probe = make_env(config, "eval")
    agent = Agent(config, probe.obs_space, probe.act_space)
    probe.close()
    ckpt = load_checkpoint(logdir, map_location=agent.device)
    if ckpt is None:
        raise CheckpointError(f"{logdir} has no complete checkpoint yet; train longer (run.checkpoint_every) first")
    agent.load_state_dict(ckpt.tensors["agent"])
    count = args.episodes or config.run.eval_episodes
    policy = args.policy or ("both" if config.run.eval_sample else "mode")
    frames = ckpt.step * config.env.action_repeat
    video_dir = logdir / "videos" / f"eval_{ckpt.step:012d}" if args.video else None
    print(f"checkpoint {ckpt.path.name} (step {ckpt.step:,}, {frames:,} frames)")
    for name, mode in POLICIES[policy]:
        episodes = run_episodes(agent, config, count, ckpt.step, video_dir=video_dir,
                                tag="eval" if name == "mode" else f"eval_{name}", mode=mode)
        with open(logdir / "eval.jsonl", "a", encoding="utf-8") as file:
            for index, episode in enumerate(episodes):
                record = {"step": ckpt.step, "frames": frames, "policy": name, "episode": index,
                          "return": episode.score, "length": episode.length}
                file.write(json.dumps(record) + "\n")
                print(f"{name} policy, episode {index}: return {episode.score:.1f}, length {episode.length}")
        returns = [e.score for e in episodes]  # ± the sample std, as `record_study` and the studies report
        spread = np.std(returns, ddof=1) if len(returns) > 1 else 0.0
        print(f"{name} policy: mean return {np.mean(returns):.2f} ± {spread:.2f} (sample std) over {len(returns)} episodes")
    print(f"results appended to {logdir / 'eval.jsonl'}" + (f"; videos in {video_dir}" if video_dir else ""))
    return 0
