"""What the diagnostics share: a run's config, its agent at the newest checkpoint, the newest
steps of its replay, the prior's predictions along the replay's actions, world-model updates on
a copy of its replay, and the Markdown table they print. Not a tool: the tools import it."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from reverie import runtime
from reverie.agent import Agent
from reverie.checkpoint import list_checkpoints, read_checkpoint
from reverie.config import Config, load_config_file, set_value, validate
from reverie.envs import make_env
from reverie.replay import Replay


class Table:
    """A Markdown table, printed row by row as it is measured, and saved at the end if asked."""

    def __init__(self, header: str):
        self.rows = [header, "|---" * (header.count("|") - 1) + "|"]
        print(*self.rows, sep="\n", flush=True)

    def add(self, row: str) -> None:
        self.rows.append(row)
        print(row, flush=True)

    def save(self, path: Path | None, append: bool = False) -> None:
        if path:
            with path.open("a" if append else "w") as f:
                f.write("\n".join(self.rows) + "\n")


def mean(values: np.ndarray) -> str:
    return f"{values.mean():.3f}" if len(values) else "–"


def run_config(logdir: Path, overrides: dict | None = None) -> Config:
    """The run's resolved config with ``overrides`` (dotted keys) applied and checked
    (``ConfigError`` naming a bad key or value)."""
    config = load_config_file(logdir / "config.yaml")
    for key, value in (overrides or {}).items():
        set_value(config, key, value)
    return validate(config)


def load_agent(logdir: Path, overrides: dict | None = None, fresh: bool = False) -> tuple[Agent, Path]:
    """The run's agent at its newest checkpoint, with config ``overrides`` (dotted keys) applied;
    ``fresh``: newly initialised from the run's seed instead (sizes may then be overridden too)."""
    config = run_config(logdir, overrides)
    runtime.prepare_process(config)  # MUJOCO_GL before dm_control loads, as the CLI sets it
    runtime.configure(config)
    checkpoints = list_checkpoints(logdir)
    if not checkpoints:
        raise SystemExit(f"{logdir} has no complete checkpoint; train it first (reverie train --logdir {logdir})")
    env = make_env(config, "eval", 1)
    agent = Agent(config, env.obs_space, env.act_space)
    env.close()
    if not fresh:
        agent.load_state_dict(read_checkpoint(checkpoints[-1]).tensors["agent"])
    return agent, checkpoints[-1]


def newest_steps(logdir: Path, steps: int, chunk: int | None) -> tuple[dict[str, np.ndarray], int]:
    """The newest ``steps`` (rounded down to whole chunks) of the run's replay as ``[N, chunk, ...]``
    sequences, each marked ``is_first`` at its start, and the number of episode starts in them.
    ``chunk=None``: one sequence of the newest ``steps``, or of all stored steps where fewer."""
    files, total = [], 0  # newest first
    for path in sorted((logdir / "replay").glob("ep*.npz"), reverse=True):
        with np.load(path) as stored:
            files.append({key: stored[key] for key in stored.files})
        total += len(files[-1]["reward"])
        if total >= steps:
            break
    data = {key: np.concatenate([f[key] for f in reversed(files)]) for key in files[0]}
    stored = min(steps, len(data["reward"]))
    chunk = chunk or stored
    usable = stored // chunk * chunk if chunk else 0
    if not usable:
        raise SystemExit(f"{logdir}: fewer than {chunk or 1} stored steps; pass a smaller --chunk")
    batch = {key: value[-usable:].reshape(-1, chunk, *value.shape[1:]) for key, value in data.items()}
    starts = int(batch["is_first"].sum())  # before the chunks' own starts are marked
    batch["is_first"][:, 0] = True  # each chunk starts from the zero state, as a training sequence
    return batch, starts


def imagined_from_posterior(agent: Agent, batch: dict[str, np.ndarray], k: int, observed, draw: str = "sample"):
    """States imagined ``k`` prior steps ahead from every posterior state of ``observed``
    (``world_model.observe(batch)``) but the last ``k`` of each sequence, with the replay's own
    actions (as the actor's imagination rolls the prior, here along the path the data took):
    ``(state, valid)``, the state ``[B·(T−k), ...]`` predicting step ``j + k`` from step ``j``,
    ``valid`` false where an episode starts within ``(j, j + k]`` (the prior cannot know the reset).
    ``draw="mode"`` takes each imagined latent's most likely class instead of a draw."""
    post, action = observed.post, observed.data["action"]
    rows, length = action.shape[:2]
    n = length - k
    state = {key: value[:, :n].reshape(rows * n, *value.shape[2:]) for key, value in post.items()}
    actions = action.unfold(1, k, 1)[:, 1:n + 1].permute(0, 1, 3, 2).reshape(rows * n, k, -1)  # a_{j+1..j+k}
    for i in range(k):
        state = agent.world_model.rssm.img_step(state, actions[:, i], draw=draw)
    return state, within_episode(batch, k)


def within_episode(batch: dict[str, np.ndarray], k: int) -> np.ndarray:
    """``[B·(T−k)]``: whether no episode starts within ``(j, j + k]`` of each step ``j`` of
    ``batch`` but the last ``k`` of each sequence (``imagined_from_posterior``'s ``valid``)."""
    n = batch["is_first"].shape[1] - k
    starts = torch.as_tensor(batch["is_first"]).bool().unfold(1, k, 1)[:, 1:n + 1].any(-1)
    return ~starts.reshape(-1).numpy()


def prior_steps(text: str) -> list[int]:
    """``--prior``'s ``"1,2,3"`` as ``[1, 2, 3]`` (argparse ``type``: a bad value is one usage line)."""
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        ks = [0]
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give imagination steps as positive integers, e.g. 1,2,3,5,8")
    return ks


def train_world_model(agent, train_dir: Path, updates: int, seed: int) -> float:
    """``updates`` world-model steps (the actor and critic untouched) on batches drawn from the
    replay in ``train_dir`` as the run's config draws them, seeded; the wall seconds they took."""
    config = agent.config
    replay = Replay.load(train_dir, config.replay.capacity, seed=seed)
    torch.manual_seed(seed)
    began = time.perf_counter()
    for _ in range(updates):
        agent.train_world_model(replay.sample(config.replay.batch, config.replay.length))
    return time.perf_counter() - began


def training_copy(logdir: Path, holdout: int, into: Path) -> Path:
    """A copy of the run's replay under ``into`` without its newest ``holdout`` steps."""
    train_dir = into / "replay"
    shutil.copytree(logdir / "replay", train_dir)
    total = Replay.load(train_dir, 10**9).step
    if total <= holdout:
        raise SystemExit(f"{logdir}: its replay holds {total:,} steps, not more than --holdout {holdout:,}; "
                         f"pass a smaller --holdout")
    Replay.load(train_dir, 10**9, upto_step=total - holdout)  # cuts the copy: the held-out steps are gone
    return train_dir
