"""Is a MinAtar game's reward in its data, and in the world model's features? (issue #17)

    .venv/bin/python -m benchmarks.diagnostics.minatar_readout runs/minatar/asterix/0 [--train 100000 --holdout 20000]

``minatar_heads.py`` found the reward heads of the runs that did not learn near the constant
solution. That has two possible causes: the reward cannot be told from what the model sees,
or the model's representation does not keep what tells it. This tool separates them. It
takes the run's newest ``--train + --holdout`` replay steps and fits one new readout per
input on the first ``--train`` of them, then measures it on the newest ``--holdout``:

- ``transition``: the raw grids ``x_{t−1}``, ``x_t`` and the action ``a_{t−1}`` (zero before
  an episode's first step): everything the reward of step ``t`` can depend on;
- ``grid``: ``x_t`` alone;
- ``grid_before``: ``x_{t−1}`` and the action into step ``t``, without ``x_t``: what a one-step
  prediction has of the frames (MinAtar's hidden timers aside);
- ``features``: the world model's ``[h_t, z_t]`` at the run's newest checkpoint (the
  posterior over sequences of ``--chunk`` steps, each from the zero state, as
  ``minatar_heads.py`` computes it): what the reward head is given;
- ``deter``: ``h_t`` alone, the part of the features that the posterior and a one-step prior
  share (``h_t`` is a function of ``z_{t−1}`` and the action, not of ``x_t``); the prior's
  ``z_t`` is drawn from it;
- ``features_pair``: ``[h_{t−1}, z_{t−1}, h_t, z_t]`` (zero before a sequence's first step):
  whether what ``h_t`` lost of step ``t − 1`` is still in the state one step earlier;
- ``features_mode``: the same as ``features``, with the posterior's mode in place of its sample at every step
  (``draw="mode"``, so ``h_t`` is built from modes too): what is left when the latents'
  sampling noise is taken out;
- ``posterior_probs``: ``[h_t, p(z_t | h_t, x_t)]`` along the sampled path: the posterior's
  class probabilities instead of its one-hot sample.

``--inputs`` picks which (all of them by default).

Each readout is the reward head's shape in the ``minatar`` preset (MLP 2 × 128, ELU; another with
``--layers``/``--units``, e.g. the paper's 4 × 400) trained
with the head's loss (Normal(μ, 1), i.e. squared error), Adam 3e-4, batches of 256 steps,
``--updates`` steps, the same seed. A readout that reaches near 1 at rewarded held-out steps
on ``transition`` but not on ``features`` says the information is in the data and lost by
the representation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.diagnostics._common import Table, load_agent, mean, newest_steps

HEADER = ("| run | checkpoint | input | train steps | held-out steps | rewarded (held out) | "
          "readout where rewarded | readout elsewhere |")


INPUTS = ("transition", "grid", "grid_before", "features", "deter", "features_pair", "features_mode", "posterior_probs")


def posterior_features(world_model, batch: dict[str, np.ndarray], draw: str) -> dict[str, np.ndarray]:
    """``[h_t, z_t]`` (``features``) and ``[h_t, p(z_t)]`` (``probs``) of the posterior over
    ``batch [N, chunk, ...]``, each sequence from the zero state, ``float32 [N·chunk, D]``."""
    feats, probs = [], []
    with torch.no_grad():
        for i in range(0, len(batch["reward"]), 50):
            observed = world_model.observe({k: v[i : i + 50] for k, v in batch.items()}, draw=draw)
            post = observed.post
            feats.append(observed.feat.flatten(0, 1))
            probs.append(torch.cat([post["deter"], post["logits"].softmax(-1).flatten(-2)], -1).flatten(0, 1))
    return {"features": torch.cat(feats).float().cpu().numpy(), "probs": torch.cat(probs).float().cpu().numpy()}


def one_step_before(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Each row's predecessor in ``x [N, D]`` (steps in order), zero where ``first`` marks an
    episode's (or a chunk's) first step: nothing comes before it."""
    before = np.roll(x, 1, axis=0)
    before[first] = 0
    return before


def inputs(logdir: Path, steps: int, chunk: int, names=INPUTS) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """``({name: float32 [N, D]}, reward [N], checkpoint step)`` for the newest ``steps``."""
    agent, checkpoint = load_agent(logdir)
    batch, _ = newest_steps(logdir, steps, chunk)
    first = batch["is_first"].reshape(-1)
    grid = batch["vector"].reshape(len(first), -1).astype(np.float32)
    action = batch["action"].reshape(len(first), -1).astype(np.float32)
    before = one_step_before(grid, first)
    data = {"transition": np.concatenate([before, action, grid], 1), "grid": grid,
            "grid_before": np.concatenate([before, action], 1)}
    if {"features", "deter", "features_pair", "posterior_probs"} & set(names):
        torch.manual_seed(0)  # the posterior samples its latents
        sampled = posterior_features(agent.world_model, batch, "sample")
        feat = sampled["features"]
        data.update(features=feat, posterior_probs=sampled["probs"], deter=feat[:, : agent.world_model.rssm.deter],
                    features_pair=np.concatenate([one_step_before(feat, first), feat], 1))
    if "features_mode" in names:
        data["features_mode"] = posterior_features(agent.world_model, batch, "mode")["features"]
    return {name: data[name] for name in names}, batch["reward"].reshape(-1), int(checkpoint.name)


def fit_readout(x: np.ndarray, y: np.ndarray, updates: int, seed: int, layers: int = 2,
                units: int = 128) -> torch.nn.Module:
    """An MLP of ``layers`` × ``units`` ELU (the preset's reward head by default) fit to ``y``."""
    torch.manual_seed(seed)
    hidden = []
    for i in range(layers):
        hidden += [torch.nn.Linear(x.shape[1] if i == 0 else units, units), torch.nn.ELU()]
    net = torch.nn.Sequential(*hidden, torch.nn.Linear(units if layers else x.shape[1], 1))
    opt = torch.optim.Adam(net.parameters(), 3e-4)
    rng = np.random.default_rng(seed)
    x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32)
    for _ in range(updates):
        index = torch.as_tensor(rng.integers(0, len(y), 256))
        loss = 0.5 * (net(x[index]).squeeze(-1) - y[index]).pow(2).mean()  # −log N(y; μ, 1) + const
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdirs", nargs="+", type=Path)
    parser.add_argument("--train", type=int, default=100_000, help="replay steps the readouts fit")
    parser.add_argument("--holdout", type=int, default=20_000, help="newest replay steps they are measured on")
    parser.add_argument("--updates", type=int, default=15_000, help="readout updates (batches of 256)")
    parser.add_argument("--chunk", type=int, default=100, help="steps per sequence from the zero state")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=2, help="readout hidden layers (the minatar reward head's 2)")
    parser.add_argument("--units", type=int, default=128, help="readout units per layer (the minatar head's 128)")
    parser.add_argument("--inputs", default=",".join(INPUTS), help=f"comma-separated, of {', '.join(INPUTS)}")
    parser.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args()
    names = tuple(args.inputs.split(","))
    if unknown := [n for n in names if n not in INPUTS]:
        parser.error(f"unknown --inputs {', '.join(unknown)}; choose from {', '.join(INPUTS)}")
    torch.set_num_threads(1)
    table = Table(HEADER)
    for logdir in args.logdirs:
        data, reward, step = inputs(logdir, args.train + args.holdout, args.chunk, names)
        held = len(reward) - min(args.holdout, len(reward) // 2)
        paid = reward[held:] != 0
        for name, x in data.items():
            net = fit_readout(x[:held], reward[:held], args.updates, args.seed, args.layers, args.units)
            with torch.no_grad():
                out = net(torch.as_tensor(x[held:])).squeeze(-1).numpy()
            table.add(f"| {logdir} | {step:,} | {name} | {held:,} | {len(paid):,} | {int(paid.sum()):,} | "
                      f"{mean(out[paid])} | {mean(out[~paid])} |")
    table.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
