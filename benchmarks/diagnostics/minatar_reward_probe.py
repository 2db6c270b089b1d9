"""Which world-model settings let a MinAtar world model see its rewards? (issue #17)

    .venv/bin/python -m benchmarks.diagnostics.minatar_reward_probe runs/minatar/asterix/0 \
        --variant "" --variant world_model.loss_scales.reward=100 [--fresh] [--updates 3000]

``minatar_heads.py`` found the reward heads of the Asterix, Freeway and Seaquest runs near the
constant solution: rewards are rare (under 1 % of steps), and the Normal(μ, 1) reward loss
gains at most 0.5·p(1 − p) nats per step from predicting them, against tens of nats of grid
loss. This probe compares world-model settings on a fixed dataset, without a full run. Each
``--variant`` is a comma-separated list of config overrides (dotted ``key=value``, as
``reverie train`` takes them; ``""`` is the run's own config). For each variant it takes the
run's world model at its newest checkpoint (weights and optimizer state), or a newly
initialised one with ``--fresh`` (then sizes may change too), trains only the world model for
``--updates`` steps on the run's own replay minus its newest ``--holdout`` steps (sampled as
in training: ``B × L`` of the run's config, every sequence from the zero state), and then
measures on those held-out steps, never trained on:

- the reward head's mean prediction where the replay paid a reward and elsewhere;
- the objects (set cells, all channels) the decoder misses from the posterior state, per step
  (as ``minatar_heads.py`` counts them);
- the held-out per-step losses (grid, reward, KL), to show what a setting costs the rest;
- the wall seconds of the updates (one torch thread; compare only rows taken side by side);
- with ``--prior 1,2,3``, a second table: the reward head on the prior's k-step predictions of
  the held-out steps (``minatar_heads --prior``), before and after the updates. The actor
  learns from the prior's imagined states, so this says whether the updates reach them.

Every variant starts from the same weights and draws the same batches (``--seed``); the run's
own config is the control. The replay is read from a temporary copy: the run directory is not
changed. The actor is not trained: this says what the world model can learn from the data a
run collected, not what the agent would then do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.diagnostics._common import (
    Table,
    load_agent,
    mean,
    newest_steps,
    prior_steps,
    run_config,
    train_world_model,
    training_copy,
)
from benchmarks.diagnostics.minatar_heads import head_stats, prior_rows, prior_table
from reverie.config import parse_override
from reverie.errors import ConfigError

HEADER = ("| run | start | variant | updates | train seconds | held-out steps | rewarded | reward head where rewarded | "
          "reward head elsewhere | objects missed / set per step | grid loss | reward loss | KL |")


def held_out_losses(agent, batch: dict[str, np.ndarray], per: int = 50) -> dict[str, float]:
    """Per-step world-model losses on ``batch`` ``[N, chunk, ...]``, ``per`` sequences at a time."""
    totals: dict[str, float] = {}
    n = len(batch["reward"])
    with torch.no_grad():
        for i in range(0, n, per):
            part = {key: value[i : i + per] for key, value in batch.items()}
            _, metrics = agent.world_model.loss(agent.world_model.observe(part))
            for key in ("image_loss", "reward_loss", "kl_loss"):
                totals[key] = totals.get(key, 0.0) + float(metrics[key]) * len(part["reward"])
    return {key: value / n for key, value in totals.items()}


def parse_variant(text: str) -> dict:
    """``"a.b=1,c.d=x"`` -> ``{"a.b": 1, "c.d": "x"}`` (values parsed as YAML, as the CLI does)."""
    return dict(parse_override(item.strip()) for item in text.split(",") if item.strip())


def probe(logdir: Path, variant: str, fresh: bool, updates: int, held: dict[str, np.ndarray], seed: int,
          train_dir: Path, prior: Sequence[int] = (), samples: int = 4) -> tuple[str, list[str]]:
    """One variant's row: ``updates`` world-model steps on ``train_dir``, measured on ``held``;
    and, for each ``k`` in ``prior``, the reward head on the k-step prior before and after them."""
    agent, checkpoint = load_agent(logdir, parse_variant(variant), fresh=fresh)
    start = "fresh" if fresh else f"checkpoint {int(checkpoint.name):,}"
    name = f"{logdir}, {variant or 'as run'}, {start}"
    torch.manual_seed(seed)  # the same imagined draws before and after
    before = prior_rows(agent, held, list(prior), samples, f"{name}, +0 updates") if prior else []
    seconds = train_world_model(agent, train_dir, updates, seed)
    torch.manual_seed(seed)  # the posterior samples its latents: same draws for every variant
    stats = head_stats(agent, held)
    losses = held_out_losses(agent, held)
    torch.manual_seed(seed)
    after = prior_rows(agent, held, list(prior), samples, f"{name}, +{updates:,} updates") if prior else []
    return (f"| {logdir} | {start} | {variant or 'as run'} | {updates:,} | {seconds:.0f} | {held['reward'].size:,} | {len(stats['rewarded']):,} | "
            f"{mean(stats['rewarded'])} | {mean(stats['elsewhere'])} | "
            f"{stats['missed'].sum():.2f}/{stats['set'].sum():.2f} | {losses['image_loss']:.2f} | "
            f"{losses['reward_loss']:.4f} | {losses['kl_loss']:.3f} |"), before + after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--variant", action="append", default=None,
                        help='comma-separated overrides, repeatable; "" = the run\'s config (default: "" only)')
    parser.add_argument("--fresh", action="store_true", help="start from new weights instead of the checkpoint")
    parser.add_argument("--updates", type=int, default=3000, help="world-model updates per variant")
    parser.add_argument("--holdout", type=int, default=20_000, help="newest replay steps kept out of training")
    parser.add_argument("--chunk", type=int, default=100, help="steps per held-out sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior", type=prior_steps, default=[], help="also the reward head on the k-step prior predictions "
                        "before and after the updates, e.g. 1,2,3 (as minatar_heads --prior)")
    parser.add_argument("--samples", type=int, default=4, help="draws of the imagined latents per --prior k")
    parser.add_argument("--out", type=Path, help="also append the rows as Markdown here")
    args = parser.parse_args()
    variants = args.variant or [""]
    for variant in variants:  # every variant checked before the first one trains for minutes
        try:
            run_config(args.logdir, parse_variant(variant))
        except ConfigError as error:
            parser.error(f"--variant {variant!r}: {error}")
    torch.set_num_threads(1)
    table, prior = Table(HEADER), []
    with tempfile.TemporaryDirectory(prefix="reward_probe_") as tmp:
        train_dir = training_copy(args.logdir, args.holdout, Path(tmp))
        held, _ = newest_steps(args.logdir, args.holdout, args.chunk)  # read once, measured by every variant
        for variant in variants:
            row, rows = probe(args.logdir, variant, args.fresh, args.updates, held, args.seed, train_dir, args.prior, args.samples)
            table.add(row)
            prior += rows
    table.save(args.out, append=True)
    if prior:
        prior_table(prior, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
