"""CartPole over seeds (issue #17): eval return mean ± std per evaluation, with the training
signals that explain a collapse.

    for s in 0 1 2; do reverie train --task gym_CartPole-v1 --preset gym,cartpole --seed $s \\
        --steps 30000 --logdir runs/cartpole/$s --set threads=1 & done; wait
    .venv/bin/python benchmarks/cartpole_seeds.py [--runs runs/cartpole] [--out benchmarks/results/learning/cartpole_seeds]

For every ``RUNS/<seed>`` it writes ``OUT/gym_CartPole-v1/<seed>/`` (config, evaluations and
training metrics, training returns per 1,000-step window, ``curve.csv``, ``run.json``; as
``minatar_collect.py`` does), then ``OUT/README.md``: eval return per seed and mean ± std over
seeds at every evaluation, and per seed at every evaluation the actor's entropy, the critic's
mean value, the world model's KL and the discount head's loss, and ``OUT/curves.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minatar_collect  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = {"train/actor_ent": "actor entropy (nats, of ln 2 = 0.69)", "train/critic_mean": "critic mean",
           "train/model_kl": "KL(post ‖ prior)", "train/discount_loss": "discount loss"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/cartpole")
    parser.add_argument("--out", default="benchmarks/results/learning/cartpole_seeds")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--extra", default="", help="the runs' further `reverie train` arguments, for the README "
                        "(e.g. '--set behavior.entropy=1e-2'); the runs' config.yaml files are what they trained with")
    parser.add_argument("--title", default="CartPole over seeds (issue #17)")
    args = parser.parse_args()
    runs, out = ROOT / args.runs, ROOT / args.out
    logdirs = sorted(p for p in runs.iterdir() if (p / "config.yaml").exists()) if runs.is_dir() else []
    if not logdirs:
        print(f"no runs under {runs}", file=sys.stderr)
        return 1
    infos = {d.name: minatar_collect.collect_run(d, out / "gym_CartPole-v1" / d.name, args.steps, window=1000)
             for d in logdirs}
    rows = {seed: minatar_collect.read_jsonl(d / "metrics.jsonl") for seed, d in zip(infos, logdirs)}
    evals = {seed: {s: m for s, m, _, _ in minatar_collect.eval_points(r)} for seed, r in rows.items()}
    steps = sorted(set.intersection(*(set(e) for e in evals.values())))
    seeds = list(infos)
    head = "| step | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sample std |"
    lines = [head, "|---" * (len(seeds) + 2) + "|"]
    for step in steps:
        values = [evals[s][step] for s in seeds]
        lines.append(f"| {step / 1e3:g}k | " + " | ".join(f"{v:.0f}" for v in values)
                     + f" | **{np.mean(values):.0f} ± {np.std(values, ddof=1):.0f}** |")
    signal_lines = ["| seed | step | eval | " + " | ".join(SIGNALS.values()) + " |", "|---" * (len(SIGNALS) + 3) + "|"]
    for seed in seeds:
        for step in sorted(evals[seed]):
            cells = [minatar_collect.last_at(rows[seed], key, step) for key in SIGNALS]
            signal_lines.append(f"| {seed} | {step / 1e3:g}k | {evals[seed][step]:.0f} | "
                                + " | ".join("–" if c is None else f"{c:.3g}" for c in cells) + " |")
    walls = ", ".join(f"seed {s}: {i['wall_seconds'] / 60:.0f} min to {i['steps_reached']:,} steps" for s, i in infos.items())
    extra = f" {args.extra}" if args.extra else ""
    text = f"""# {args.title}

Collected {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/cartpole_seeds.py`:
`reverie train --task gym_CartPole-v1 --preset gym,cartpole --seed S --steps {args.steps}{extra}`, {len(seeds)} seeds,
1 torch thread each, on `{minatar_collect.this_machine()}`, all seeds at once beside other work
(wall times include waiting for the CPU: {walls}).

Eval return (mean of the 5 episodes of `mode="eval"`, the 500-step maximum) at each evaluation:

{chr(10).join(lines)}

The training signals logged last before each evaluation, per seed:

{chr(10).join(signal_lines)}

Curves: `curves.png` (mean over seeds, ±1 sample std shaded). Per seed: `gym_CartPole-v1/<seed>/`.
"""
    if (out / "failures.md").exists():
        text += ("\nHow each checkpoint's eval episodes ended (track edge, pole, time limit), with the discount "
                 "head's belief there: `failures.md`, by `benchmarks/cartpole_failures.py`.\n")
    (out / "README.md").write_text(text)
    reverie = str(Path(sys.executable).with_name("reverie"))
    subprocess.run([reverie, "plot", str(out), "--out", str(out / "curves.png")], check=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
