"""How CartPole's eval episodes end (issue #17): for every checkpoint of every run, replay the
evaluation's policy (``mode="eval"``) and print how each episode ended, with what the world
model's discount head believed there.

    .venv/bin/python -m benchmarks.diagnostics.cartpole_failures runs/cartpole/0 runs/cartpole/1 [--episodes 3]

Per episode: its length; the final physical state (cart position x, its velocity, pole angle
θ, its velocity; Gymnasium ends an episode at |x| > 2.4 or |θ| > 0.2095 rad); and the
discount head's mean (its target is γ = 0.99 where the episode goes on and 0 where it ends)
at the terminal step, the lowest over the five steps before it, and the mean over the
episode. A head that gives ~0.99 at the terminal step has not learned that this state ends
the episode. With ``--out`` the same rows are written as Markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from reverie import runtime
from reverie.agent import Agent
from reverie.checkpoint import list_checkpoints, read_checkpoint
from reverie.config import load_config_file
from reverie.envs import make_env
from reverie.run.driver import Driver

HEADER = ("| run | checkpoint | episode | length | ends at | x | ẋ | θ | θ̇ | discount head at end | "
          "lowest of 5 before | mean |")
RULE = "|---" * (HEADER.count("|") - 1) + "|"


def how_it_ended(state: np.ndarray, length: int) -> str:
    """Which of Gymnasium's CartPole conditions ended the episode."""
    if abs(state[0]) > 2.4:
        return "track edge"
    if abs(state[2]) > 0.2095:
        return "pole fell"
    return "time limit" if length >= 500 else "?"


def episode_rows(logdir: Path, episodes: int) -> list[str]:
    config = load_config_file(logdir / "config.yaml")
    runtime.configure(config)
    rows = []
    for path in list_checkpoints(logdir):
        env = make_env(config, "eval", 1)
        agent = Agent(config, env.obs_space, env.act_space)
        agent.load_state_dict(read_checkpoint(path).tensors["agent"])
        driver, head = Driver(env, agent), agent.world_model.heads["discount"]
        torch.manual_seed(0)
        for index in range(episodes):
            driver.reset()
            finished, continues, state = None, [], None
            while finished is None:
                _, finished = driver.step("eval")
                latent = driver.policy_state[0]
                with torch.no_grad():
                    continues.append(float(head(agent.world_model.rssm.get_feat(latent)).mean))
                state = np.asarray(env.env.unwrapped.state)
            before = min(continues[-6:-1]) if len(continues) > 5 else float("nan")
            rows.append(f"| {logdir} | {int(path.name):,} | {index} | {finished.length} | "
                        f"{how_it_ended(state, finished.length)} | {state[0]:+.2f} | {state[1]:+.2f} | "
                        f"{state[2]:+.3f} | {state[3]:+.2f} | {continues[-1]:.3f} | {before:.3f} | "
                        f"{np.mean(continues[:-1]):.3f} |")
            print(rows[-1], flush=True)
        env.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="logdirs of `--preset gym,cartpole` runs")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()
    print(HEADER, RULE, sep="\n")
    rows = [row for run in args.runs for row in episode_rows(run, args.episodes)]
    if args.out:
        args.out.write_text("\n".join([HEADER, RULE, *rows]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
