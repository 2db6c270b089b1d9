"""Which of Asterix's rewards can one step of prediction see? (issue #31)

    .venv/bin/python -m benchmarks.diagnostics.asterix_rewards runs/minatar/minatar/minatar_asterix/2 [--steps 20000]

In MinAtar's Asterix (``minatar/environments/asterix.py``) a gold cell pays when it and the
player meet, in one of two ways within a frame:

- ``step_onto``: the player's move takes it onto the gold's cell (checked right after the move);
- ``gold_moves_onto``: the gold, moving one cell along its row on the game's move timer, steps
  onto the player's new cell (checked after the entities move).

The first is told by the frame before, ``x_{t−1}``, and the action into step ``t`` (up to a
sticky action, 10 % in the ``minatar`` preset). The second needs the move timer too, which no
frame shows (the entities move every few frames, faster as the episode goes on): a model knows
it only from the history of moves. Each rewarded step of a run's newest replay steps is put in
one of these classes from ``x_{t−1}`` and ``a_t`` alone (``both`` if either could pay it,
``other`` if neither: a sticky action that moved the player elsewhere, or a gold spawned onto
the player); an episode's first step has no frame before and is left out. A gold's direction is
read from its trail cell, or, at the edge where it spawned and has no trail yet, from the edge.
The last column checks the data itself: how often the player is where the frame before and the
recorded action put it (the rest are sticky actions).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

from benchmarks.diagnostics._common import Table, newest_steps, run_config
from reverie.envs.minatar import MinAtarEnv, channel_names

CASES = ("step_onto", "gold_moves_onto", "both", "other")
MOVES = {"n": (0, 0), "l": (0, -1), "u": (-1, 0), "r": (0, 1), "d": (1, 0), "f": (0, 0)}  # (dy, dx)
HEADER = "| run | steps | rewarded (after a first step) | " + " | ".join(CASES) + " | player moves as the action says |"


@functools.cache
def channel(name: str) -> int:
    """Asterix's channel index of ``name`` (``channel_names`` builds a game to read them: once)."""
    return channel_names("asterix").index(name)


def gold_direction(grid: np.ndarray, y: int, x: int) -> int:
    """+1 (right) or −1 (left) for the gold at ``(y, x)`` of ``grid [10, 10, C]`` from its
    trail cell behind it; a gold with no trail yet spawned at an edge and moves away from it."""
    trail = channel("trail")
    if x > 0 and grid[y, x - 1, trail]:
        return 1
    if x < 9 and grid[y, x + 1, trail]:
        return -1
    return 1 if x == 0 else -1


def next_cell(grid: np.ndarray, move: str) -> tuple[int, int]:
    """The player's cell after ``move`` from ``grid [10, 10, C]`` (bool), as the game moves it."""
    (y, x), (dy, dx) = np.argwhere(grid[..., channel("player")])[0], MOVES[move]
    return min(8, max(1, y + dy)), min(9, max(0, x + dx))  # the game keeps the player in rows 1–8


def classify(grid: np.ndarray, move: str) -> str:
    """The class of a reward paid after ``grid [10, 10, C]`` (bool) and the player's ``move``."""
    gold = channel("gold")
    y, x = next_cell(grid, move)
    onto = bool(grid[y, x, gold])
    moves_onto = any(gy == y and gx + gold_direction(grid, gy, gx) == x for gy, gx in np.argwhere(grid[..., gold]))
    return "both" if onto and moves_onto else "step_onto" if onto else "gold_moves_onto" if moves_onto else "other"


def count_cases(vector: np.ndarray, moves: list[str], reward: np.ndarray, first: np.ndarray) -> dict[str, int]:
    """Rewarded steps per class over consecutive steps: ``vector [N, 10·10·C]`` (0/1), the
    player's ``moves [N]`` into each step, ``reward [N]``, ``first [N]`` marking episode starts."""
    grids = vector.reshape(len(vector), 10, 10, -1) > 0.5
    counts = dict.fromkeys(CASES, 0)
    for t in np.flatnonzero((reward != 0) & ~first):
        counts[classify(grids[t - 1], moves[t])] += 1
    return counts


def player_follows(vector: np.ndarray, moves: list[str], first: np.ndarray) -> float:
    """The share of steps (after a first step) whose player cell is the one that the frame before
    and the recorded move give: 1 without sticky actions, about 0.9 with the preset's 10 %. A
    replay whose actions were stored one step off would read far less."""
    grids = vector.reshape(len(vector), 10, 10, -1) > 0.5
    steps = [t for t in np.flatnonzero(~first) if t > 0]
    return float(np.mean([grids[t][(*next_cell(grids[t - 1], moves[t]), channel("player"))] for t in steps]))


def run_row(logdir: Path, steps: int) -> str:
    config = run_config(logdir)
    if config.task != "minatar_asterix":
        raise SystemExit(f"{logdir} is a {config.task} run; this tool reads Asterix runs (minatar_asterix)")
    env = MinAtarEnv("asterix", full_action_space=config.env.full_action_space)
    letters = [env.env.env.action_map[a] for a in env.actions]
    # One sequence, in order; its first step (no frame before it) and the episodes' starts are marked.
    batch, _ = newest_steps(logdir, steps, None)  # all stored steps where fewer than --steps
    action = batch["action"].reshape(-1, batch["action"].shape[-1]).argmax(-1)
    first = batch["is_first"].reshape(-1)
    counts = count_cases(batch["vector"].reshape(len(action), -1), [letters[a] for a in action],
                         batch["reward"].reshape(-1), first)
    moves = [letters[a] for a in action]
    return (f"| {logdir} | {len(action):,} | {sum(counts.values()):,} | " + " | ".join(f"{counts[c]:,}" for c in CASES)
            + f" | {player_follows(batch['vector'].reshape(len(action), -1), moves, first):.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=20_000, help="newest stored steps per run (all, where fewer)")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
    table = Table(HEADER)
    for logdir in args.logdirs:
        table.add(run_row(logdir, args.steps))
    table.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
