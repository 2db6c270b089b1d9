"""Does the discount head read the game, or the step count since the zero state? And how far
does imagination reach before it calls the episode over?

    .venv/bin/python -m benchmarks.diagnostics.discount_horizon runs/minatar/minatar_asterix/0 [--steps 5000] [--out F]

Every training sequence starts from the RSSM's zero state (``is_first`` at its first step), and
in the windowed replay rules an episode's last step can only be a window's last step (a window
ends inside its episode). So every terminal the discount head was trained on sat at position
L − 1, and a model can learn "L − 1 steps since the zero state" as a cue for the end.
Imagination rolls H steps from every position of a window, past L. This tool measures both,
on the newest checkpoint and the newest ``--steps`` stored steps of a run:

1. a posterior pass over sequences of ``--long`` steps (default 4 L) from the zero state: the
   discount head's mean continuation probability at the non-terminal steps and at the terminal
   steps, by position since the zero state (before L/2, to L, to 2 L, beyond). A head that reads
   the game gives the same numbers at every position;
2. imagination as training runs it: windows of L steps, the actor's own actions, H steps from
   every posterior state: the weight (product of the predicted discounts, section 2.2) left
   after H/3, 2H/3 and H imagined steps, by the start's position in the window (8 groups). With γ = 0.99
   and no predicted end the weight after H steps is γ^H.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.diagnostics._common import Table, load_agent, newest_steps
from reverie.agent import Agent
from reverie.behavior.actor_critic import imagine

POSTERIOR_HEADER = ("| run | checkpoint | positions since the zero state | steps | continuation, non-terminal steps "
                    "| terminal steps | continuation, terminal steps |")
IMAGINED_HEADER = "| run | start position in the L-step window | starts | weight after {} | after {} | after {} (γ^H = {:.3f}) |"


def buckets(length: int, total: int) -> list[tuple[int, int]]:
    """Position ranges ``[lo, hi)`` of a ``total``-step pass for a model trained on ``length``-step
    windows: before L/2, to L, to 2 L and beyond, the empty ones dropped."""
    edges = sorted({0, length // 2, length, 2 * length, total})
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if lo < min(hi, total)]


def posterior_by_position(agent: Agent, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(continuation, terminal)``, both ``[N, T]``: the discount head's probability of going on
    (its mean over γ) at each step of a posterior pass over ``batch``, and the replay's
    ``is_terminal``."""
    with torch.no_grad():
        feat = agent.world_model.observe(batch).feat
        p = agent.world_model.heads["discount"](feat).mean.cpu().numpy()
    return p / agent.config.behavior.discount, batch["is_terminal"].astype(bool)


def posterior_rows(name: Path, checkpoint: Path, agent: Agent, batch: dict[str, np.ndarray]) -> list[str]:
    continuation, terminal = posterior_by_position(agent, batch)
    rows = []
    for lo, hi in buckets(agent.config.replay.length, continuation.shape[1]):
        c, t = continuation[:, lo:hi], terminal[:, lo:hi]
        at = f"{c[t].mean():.3f}" if t.any() else "–"
        rows.append(f"| {name} | {int(checkpoint.name):,} | {lo}–{hi - 1} | {c.size:,} | {c[~t].mean():.3f} | {int(t.sum())} | {at} |")
    return rows


def imagined_weights(agent: Agent, batch: dict[str, np.ndarray]) -> np.ndarray:
    """``[H + 1, N, L]``: the imagination weight of each imagined step from each posterior state
    of the ``[N, L]`` windows in ``batch``, the actor choosing the actions (one draw)."""
    config = agent.config.behavior
    with torch.no_grad():
        post = agent.world_model.observe(batch).post
        traj = imagine(agent.world_model, agent.behavior.actor, post, torch.as_tensor(batch["is_terminal"]),
                       config.horizon, config.discount)
    return traj["weight"].reshape(config.horizon + 1, *batch["reward"].shape).cpu().numpy()


def imagined_rows(name: Path, agent: Agent, batch: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    weight = imagined_weights(agent, batch)
    horizon, length = weight.shape[0] - 1, weight.shape[2]
    steps = [max(1, horizon // 3), max(1, 2 * horizon // 3), horizon]
    header = IMAGINED_HEADER.format(*steps, agent.config.behavior.discount ** horizon)
    group = max(1, length // 8)
    rows = []
    for lo in range(0, length, group):
        w = weight[:, :, lo:lo + group]
        rows.append(f"| {name} | {lo}–{min(lo + group, length) - 1} | {w[0].size:,} | "
                    + " | ".join(f"{w[k].mean():.3f}" for k in steps) + " |")
    return header, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=5_000, help="newest stored steps per run")
    parser.add_argument("--long", type=int, default=0, help="steps per posterior sequence (default 4 L)")
    parser.add_argument("--out", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the posterior and the actor draw: the same seed gives the same tables
    posterior, imagined, header = Table(POSTERIOR_HEADER), [], ""
    for logdir in args.logdirs:
        agent, checkpoint = load_agent(logdir)
        if "discount" not in agent.world_model.heads:
            raise SystemExit(f"{logdir}: the world model has no discount head (world_model.heads.discount=false)")
        length = agent.config.replay.length
        for row in posterior_rows(logdir, checkpoint, agent, newest_steps(logdir, args.steps, args.long or 4 * length)[0]):
            posterior.add(row)
        header, rows = imagined_rows(logdir, agent, newest_steps(logdir, args.steps, length)[0])
        imagined += rows
    posterior.save(args.out)
    table = Table(header)
    for row in imagined:
        table.add(row)
    table.save(args.out, append=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
