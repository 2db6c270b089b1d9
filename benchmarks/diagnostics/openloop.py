"""How far ahead a pixel run's world model sees (issue #35): the decoder's error on the moving
objects and the reward head's error, on the posterior and on k-step prior predictions.

    .venv/bin/python -m benchmarks.diagnostics.openloop runs/dmc_study/dmc+dmc_small/dmc_cartpole_swingup/0 \
        --prior 1,3,5,10,15

For each run, its newest checkpoint is loaded and the newest ``--steps`` stored steps of its
replay are cut into sequences of ``--chunk`` steps, each from the zero state as in training (the
same reading as ``minatar_heads``). The posterior's states and the states the prior imagines
``k`` steps ahead of each of them, along the replay's own actions (as the actor imagines, here
on the path the data took), are decoded, and per row the table gives:

- the image error: mean squared error per pixel value, images in [−0.5, 0.5];
- the **foreground error**: the squared error summed over the moving pixels (those that differ
  from their sequence's median frame by more than ``--threshold`` in some channel: on DMC's
  fixed cameras, the cart and pole or the walker), divided by what drawing the median frame
  there would cost. 0: the objects are drawn where they are; 1: as good as drawing none;
- the reward head's root mean squared error against the replay's (transformed) reward, beside
  that of the best constant guess (the rewards' standard deviation), and their correlation.

With ``--updates N``, the newest ``--holdout`` steps are measured instead, before and after
``N`` more world-model updates on the rest of the replay (a copy, batches as the run drew them,
as ``minatar_reward_probe`` trains; the run directory is not changed): whether the model sees
further with more updates on the data the run had, that is whether it is short of updates or of
data.

A posterior row near 0 with prior rows near 1 says what the open-loop videos show: the model
reconstructs the scene it is shown but cannot imagine it, so the actor learns from states
without the objects its reward depends on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.diagnostics._common import (
    Table,
    imagined_from_posterior,
    load_agent,
    newest_steps,
    prior_steps,
    train_world_model,
    training_copy,
    within_episode,
)
from reverie.agent import Agent
from reverie.nn.layers import preprocess_image

HEADER = ("| run | checkpoint | state | steps | image error per pixel | foreground error (0 exact, "
          "1 = objects absent) | reward RMSE (constant guess) | reward correlation |")


def foreground_error(model: torch.Tensor, truth: torch.Tensor, threshold: float,
                     where: torch.Tensor | None = None) -> tuple[float, float]:
    """``(image error per pixel, foreground error)`` of ``model`` against ``truth``, both
    ``[N, T, C, H, W]`` in [−0.5, 0.5], over the frames ``where`` (``[N, T]`` bool; all by
    default): the foreground is the pixels that differ from their sequence's median frame (of
    all its frames) by more than ``threshold`` in some channel, and its error is the model's
    squared error there over the median frame's (NaN without any foreground pixel)."""
    where = torch.ones(truth.shape[:2], dtype=torch.bool, device=truth.device) if where is None else where
    background = truth.median(1, keepdim=True).values
    moving = ((truth - background).abs().amax(2, keepdim=True) > threshold) & where[..., None, None, None]
    moving = moving.expand_as(truth)
    squared = (model - truth) ** 2
    absent = ((background - truth) ** 2)[moving].sum()
    ratio = squared[moving].sum() / absent if absent > 0 else torch.tensor(float("nan"))
    return squared[where].mean().item(), ratio.item()


def reward_error(predicted: np.ndarray, reward: np.ndarray) -> tuple[float, float, float]:
    """``(RMSE, RMSE of the best constant guess, correlation)`` of ``predicted`` against ``reward``."""
    rmse = float(np.sqrt(np.mean((predicted - reward) ** 2)))
    constant = float(reward.std())
    correlation = float(np.corrcoef(predicted, reward)[0, 1]) if constant > 0 and predicted.std() > 0 else float("nan")
    return rmse, constant, correlation


def row(name: str, checkpoint: int, state: str, steps: int, image: tuple[float, float],
        reward: tuple[float, float, float]) -> str:
    return (f"| {name} | {checkpoint:,} | {state} | {steps:,} | {image[0]:.5f} | {image[1]:.3f} | "
            f"{reward[0]:.3f} ({reward[1]:.3f}) | {reward[2]:.3f} |")


def rows(agent: Agent, batch: dict[str, np.ndarray], ks: list[int], samples: int, threshold: float,
         name: str, checkpoint: int) -> list[str]:
    """One row for the posterior, then one per ``k`` (errors averaged over ``samples`` draws of the
    imagined latents; only predictions whose ``k`` steps stay inside one episode count)."""
    model = agent.world_model
    decoder, head = model.heads["decoder"], model.heads["reward"]
    with torch.no_grad():
        observed = model.observe(batch)
        truth, reward = preprocess_image(observed.data["image"]), observed.data["reward"]
        out = [row(name, checkpoint, "posterior", reward.numel(),
                   foreground_error(decoder(observed.feat)["image"].mean, truth, threshold),
                   reward_error(head(observed.feat).mean.squeeze(-1).cpu().numpy().ravel(),
                                reward.cpu().numpy().ravel()))]
        for k in ks:
            images, rewards = [], []
            target, target_reward = truth[:, k:], reward[:, k:].reshape(-1).cpu().numpy()
            valid = within_episode(batch, k)  # the prior cannot know a reset: none counts across one
            keep = torch.as_tensor(valid, device=truth.device).reshape(target.shape[:2])
            for _ in range(samples):
                state, _ = imagined_from_posterior(agent, batch, k, observed)
                feat = model.rssm.get_feat(state)
                image = decoder(feat)["image"].mean.reshape(target.shape)
                images.append(foreground_error(image, target, threshold, where=keep))
                rewards.append(reward_error(head(feat).mean.squeeze(-1).cpu().numpy()[valid], target_reward[valid]))
            out.append(row(name, checkpoint, f"{k}-step prior", int(valid.sum()), tuple(np.mean(images, 0)),
                           tuple(np.mean(rewards, 0))))
    return out


def measure(logdir: Path, args: argparse.Namespace, table: Table) -> None:
    """``rows`` of one run into ``table``: on its newest steps, or with ``--updates``, on its
    held-out newest steps before and after that many world-model updates on the rest."""
    agent, checkpoint = load_agent(logdir)
    if "image" not in agent.world_model.shapes:
        raise SystemExit(f"{logdir}: no image observations; for MinAtar's grid use benchmarks.diagnostics.minatar_heads")
    step = int(checkpoint.name)
    if not args.updates:
        batch, _ = newest_steps(logdir, args.steps, args.chunk)
        for line in rows(agent, batch, args.prior, args.samples, args.threshold, str(logdir), step):
            table.add(line)
        return
    held, _ = newest_steps(logdir, args.holdout, args.chunk)
    with tempfile.TemporaryDirectory(prefix="openloop_") as tmp:
        train_dir = training_copy(logdir, args.holdout, Path(tmp))
        for updates in (0, args.updates):
            if updates:
                seconds = train_world_model(agent, train_dir, updates, args.seed)
                print(f"{logdir}: {updates:,} world-model updates in {seconds:.0f} s", flush=True)
            torch.manual_seed(args.seed)  # the same draws before and after
            name = f"{logdir}, held out, +{updates:,} updates"
            for line in rows(agent, held, args.prior, args.samples, args.threshold, name, step):
                table.add(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=5_000, help="newest stored steps per run")
    parser.add_argument("--chunk", type=int, default=50, help="steps per sequence from the zero state")
    parser.add_argument("--prior", type=prior_steps, default=[1, 3, 5, 10, 15],
                        help="imagination steps ahead, e.g. 1,3,5,10,15 (15: the actor's horizon)")
    parser.add_argument("--samples", type=int, default=2, help="draws of the imagined latents per k")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="a pixel moves where it differs from its sequence's median frame by more")
    parser.add_argument("--updates", type=int, default=0,
                        help="measure the held-out steps before and after this many world-model updates")
    parser.add_argument("--holdout", type=int, default=5_000, help="with --updates: newest steps kept out of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # the posterior samples its latents: the same seed gives the same table
    table = Table(HEADER)
    for logdir in args.logdirs:
        measure(logdir, args, table)
    table.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
