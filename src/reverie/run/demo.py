"""`reverie demo` (run by `make demo`): a short real training run on a small preset that ends
in minutes on a laptop CPU, then a learning-curve plot; prints where everything is."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from reverie.config import load_config

# Atari Pong from pixels at the debug sizes: the world model's losses fall and its open-loop
# predictions become recognisable within minutes on a CPU; the agent itself needs far more
# steps than a demo has to beat the built-in opponent (the paper trains 200M frames).
DEMO_TASK = "atari_pong"
DEMO_PRESETS = "atari,debug"
DEMO_OVERRIDES = [
    "run.steps=5000", "run.prefill=1000", "run.pretrain=20", "run.train_every=4",
    "run.log_every=500", "run.eval_every=2500", "run.checkpoint_every=2500",
    "replay.batch=8", "replay.length=32",
    "world_model.encoder.depth=8", "world_model.decoder.depth=8",
    "world_model.rssm.deter=64", "world_model.rssm.hidden=64",
    "world_model.rssm.stoch=8", "world_model.rssm.classes=8", "device=cpu",
]


def cli_demo(args: argparse.Namespace) -> int:
    from reverie.run.train import train

    logdir = Path(args.logdir)
    if logdir.exists():
        shutil.rmtree(logdir)  # the demo always starts fresh; real runs resume instead
    config = load_config(DEMO_PRESETS, [*DEMO_OVERRIDES, f"task={DEMO_TASK}", f"logdir={logdir}"])
    print(f"reverie demo: {DEMO_TASK}, presets {DEMO_PRESETS} + small sizes, {config.run.steps:,} agent steps "
          f"({config.run.steps * config.env.action_repeat:,} frames) on the CPU; logdir {logdir}")
    start = time.time()
    summary = train(config, logdir)
    curve = logdir / "curves.png"
    losses = logdir / "world_model.png"
    from reverie.report.plot import plot_curves, plot_world_model
    from reverie.report.rundirs import group_variants, load_runs

    groups = group_variants(load_runs([logdir]))
    plot_curves(groups, curve, metric="episode/return")
    plot_world_model(groups, losses)
    videos = sorted((logdir / "videos").glob("openl_*.gif"))
    print(f"\nreverie demo finished in {(time.time() - start) / 60:.1f} min")
    print(f"  learning curve:        {curve}")
    print(f"  world-model losses:    {losses}")
    print(f"  open-loop prediction:  {videos[-1] if videos else '(none written)'}")
    print(f"  checkpoint:            {summary['checkpoint']}")
    print(f"  metrics:               {logdir / 'metrics.jsonl'}  (tensorboard --logdir {logdir})")
    print(f"  resume or extend:      reverie train --logdir {logdir} --steps 20000")
    return 0
