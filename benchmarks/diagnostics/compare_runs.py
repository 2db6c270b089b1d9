"""Runs side by side at equal agent steps: the world model's losses, the imagined return, the
actor's entropy and the returns, one Markdown table per signal. Any task (MinAtar, DMC, Atari).

    .venv/bin/python -m benchmarks.diagnostics.compare_runs \\
        preset=benchmarks/results/learning/minatar_v2/minatar_asterix/0 \\
        larger=runs/minatar_pilot/asterix_wm256 [--every 25000] [--out compare.md]

Each ``LABEL=DIR`` is a run directory or a run recorded by ``benchmarks.record_study`` (both
hold a ``metrics.jsonl``). A training signal is the row logged last at or before the step (rows come
every ``run.log_every`` steps); a resumed run's replayed rows count once, the later sitting's.
The training return is the mean over the episodes that ended in the 5,000 steps before the step
(the collecting policy: ε-greedy for discrete actions, sampled for continuous ones), the eval
return the mean of that step's evaluation episodes (the actor's mode; the sampled-action policy's
table follows where a run has ``run.eval_sample``). A step a run has not reached is left blank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.record_study import episode_windows, eval_points, last_at
from reverie.report.rundirs import read_jsonl

SIGNALS = {
    "train/image_loss": "image loss (nats per step; Bernoulli per cell on a grid, Gaussian per pixel on images)",
    "train/reward_loss": "reward loss (nats; predicting 0 everywhere costs 0.919 + 0.5·Var r)",
    "train/kl_loss": "KL(post ‖ prior) (nats)",
    "train/return_mean": "imagined λ-return, mean over starts",
    "train/actor_ent": "actor entropy (nats; uniform is ln |A|)",
}


def training_rows(rows: list[dict]) -> list[dict]:
    """The training-metrics rows, each step once: after a resume the later sitting's row wins."""
    by_step = {}
    for row in rows:
        if any(key in row for key in SIGNALS):
            by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def cell(value: float | None) -> str:
    """Three significant digits, but whole numbers from 1,000 on (an image loss of 11,312 reads
    ``11,312``, not ``1.13e+04``, so runs a few nats apart stay apart)."""
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    parser.add_argument("--every", type=int, default=10_000, help="agent steps between table rows")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "metrics.jsonl").exists():
            parser.error(f"{spec!r}: expected LABEL=DIR with DIR/metrics.jsonl; give a run directory or a recorded run")
        runs[label] = read_jsonl(Path(path) / "metrics.jsonl")[0]
    reached = {label: max((int(r["step"]) for r in rows), default=0) for label, rows in runs.items()}
    steps = range(args.every, max(reached.values()) + 1, args.every)
    train = {label: training_rows(rows) for label, rows in runs.items()}
    episodes = {label: {w["step"]: w["episode/return"] for w in episode_windows(rows)}
                for label, rows in runs.items()}
    evals = {label: {s: m for s, m, _, _ in eval_points(rows)} for label, rows in runs.items()}
    sampled = {label: {s: m for s, m, _, _ in eval_points(rows, "eval/return_sample")}
               for label, rows in runs.items()}

    def table(title: str, value) -> str:
        lines = [f"{title}:", "", "| step | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
        for step in steps:
            cells = [value(label, step) if step <= reached[label] else None for label in runs]
            lines.append(f"| {step / 1e3:g}k | " + " | ".join(cell(c) for c in cells) + " |")
        return "\n".join(lines)

    tables = [table(title, lambda label, step, key=key: last_at(train[label], key, step))
              for key, title in SIGNALS.items()]
    tables.append(table("training return (collecting policy; mean over the episodes of the 5k steps before)",
                        lambda label, step: episodes[label].get(step)))
    tables.append(table("eval return (mode of the actor; mean of the evaluation's episodes)",
                        lambda label, step: evals[label].get(step)))
    if any(sampled.values()):
        tables.append(table("eval return (sampled actions, `run.eval_sample`; mean of the evaluation's episodes)",
                            lambda label, step: sampled[label].get(step)))
    names = ", ".join(f"{label} = `{spec.partition('=')[2]}`" for label, spec in zip(runs, args.runs))
    text = "\n\n".join([f"Runs: {names}; every {args.every:,} agent steps.", *tables]) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
