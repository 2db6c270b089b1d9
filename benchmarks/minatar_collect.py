"""Collect the MinAtar study (``benchmarks/minatar_study.py``) into the repository.

    .venv/bin/python benchmarks/minatar_collect.py [--runs runs/minatar] [--out benchmarks/results/learning/minatar]

For every run directory ``RUNS/<game>/<seed>`` it writes ``OUT/minatar_<game>/<seed>/`` (the
task's name as the folder, so ``reverie plot OUT`` groups the runs by task and seed):

- ``config.yaml``: the resolved config the run trained with;
- ``metrics.jsonl``: every evaluation row, every training-metrics row (world-model losses,
  KL, actor entropy, ...), and the training episodes' returns averaged per 5,000-step window
  (one row per window with ``episode/return``, ``episode/return_std`` and ``episodes``),
  so ``reverie plot OUT`` and ``reverie scores OUT`` read it as a run directory;
- ``curve.csv``: step, mean/std/count of the eval returns at that step, and the mean
  training-episode return of the window before it;
- ``run.json``: steps reached against the target, finished or partial, wall seconds (the
  trainer's own clock, summed over sittings), seconds per 100k steps (over the whole run, and
  in its least-contended stretch: ``segment_seconds``), and the sittings with
  their host, CPU and load (from the study's ``sittings.jsonl``).

Runs recorded in ``OUT`` earlier whose run directory is gone (``runs/`` is not in git, so a
fresh checkout has none) keep their recorded files and their row.

Then ``OUT/README.md``: the table beside the published numbers (``data/minatar_reference.csv``),
labelled PARTIAL while any run is short of its target, and ``OUT/curves.png`` /
``OUT/world_model.png`` drawn by ``reverie plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from reverie.envs.minatar import GAMES, minatar_reference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minatar_study import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 5000  # agent steps per training-episode window
LAST = 3  # the table's "final" return: mean of the last LAST evaluations


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being appended right now
                pass
    return rows


def eval_points(rows: list[dict]) -> list[tuple[int, float, float, int]]:
    """``(step, mean, std, episodes)`` of the eval returns, one per evaluation step."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        if "eval/return" in row:
            by_step.setdefault(int(row["step"]), []).append(float(row["eval/return"]))
    return [(s, float(np.mean(v)), float(np.std(v)), len(v)) for s, v in sorted(by_step.items())]


def last_at(rows: list[dict], key: str, step: int) -> float | None:
    """``key`` in the last row that has it at or before ``step`` (``None`` before the first)."""
    values = [r[key] for r in rows if key in r and r["step"] <= step]
    return float(values[-1]) if values else None


def episode_windows(rows: list[dict], window: int = WINDOW) -> list[dict]:
    """Training-episode returns averaged per ``window`` steps, as metrics rows at the window's end."""
    windows: dict[int, list[float]] = {}
    for row in rows:
        if "episode/return" in row:
            end = (int(row["step"]) + window - 1) // window * window
            windows.setdefault(end, []).append(float(row["episode/return"]))
    return [{"step": end, "frames": end, "episode/return": float(np.mean(v)), "episode/return_std": float(np.std(v)),
             "episodes": len(v)} for end, v in sorted(windows.items())]


def segment_seconds(rows: list[dict], segment: int = 10_000) -> list[float]:
    """Trainer seconds per ``segment`` agent steps, one value per whole segment from
    ``segment`` on (the first one holds the prefill, which does not train).

    The trainer's clock (``time``) is summed over sittings; steps replayed after a resume
    appear twice in ``metrics.jsonl``, and the later sitting's rows (the ones the run kept)
    win. A segment's seconds are what one process needed for it, so the fastest segments are
    the ones that waited least for the CPU."""
    timeline: list[tuple[int, float]] = []
    for row in reversed(rows):
        if "time" in row and (not timeline or row["step"] < timeline[-1][0]):
            timeline.append((int(row["step"]), float(row["time"])))
    timeline.reverse()
    if len(timeline) < 2:
        return []
    steps, times = np.array(timeline, dtype=np.float64).T
    bounds = np.arange(segment, steps[-1] + 1, segment)
    at = np.interp(bounds, steps, times)
    return [float(b - a) for a, b in zip(at[:-1], at[1:])]


def collect_run(logdir: Path, out: Path, target: int, window: int = WINDOW) -> dict:
    rows = read_jsonl(logdir / "metrics.jsonl")
    status = json.loads((logdir / "status.json").read_text()) if (logdir / "status.json").exists() else {}
    evals = eval_points(rows)
    windows = episode_windows(rows, window)
    kept = [r for r in rows if "eval/return" in r or any(k.startswith("train/") for k in r)]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(logdir / "config.yaml", out / "config.yaml")
    merged = sorted(kept + windows, key=lambda r: (r["step"], "episode/return" in r))
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in merged))
    window_mean = {w["step"]: w["episode/return"] for w in windows}
    lines = ["step,eval_return_mean,eval_return_std,eval_episodes,train_episode_return_mean"]
    for step, mean, std, n in evals:
        train = window_mean.get(step)
        lines.append(f"{step},{mean:.3f},{std:.3f},{n},{'' if train is None else f'{train:.3f}'}")
    (out / "curve.csv").write_text("\n".join(lines) + "\n")
    sittings = read_jsonl(logdir / "sittings.jsonl")
    segments = segment_seconds(rows)
    step, wall = int(status.get("step", 0)), float(status.get("wall_seconds", 0.0))
    config = yaml.safe_load((logdir / "config.yaml").read_text())
    info = {
        "task": config["task"], "seed": int(config["seed"]), "steps_reached": step, "steps_target": target,
        "finished": status.get("state") == "finished" and step >= target, "wall_seconds": wall,
        "seconds_per_100k_steps": round(wall / step * 1e5, 1) if step else None,
        # the least-contended stretch: the fastest tenth of the 10k-step segments, per 100k steps
        "seconds_per_100k_steps_fastest": round(float(np.quantile(segments, 0.1)) * 10, 1) if segments else None,
        "last_evals_mean": float(np.mean([m for _, m, _, _ in evals[-LAST:]])) if evals else None,
        "best_eval_mean": max((m for _, m, _, _ in evals), default=None),
        "machines": sorted({machine(s["host"], s["cpu"], s["cores"]) for s in sittings})
        or [this_machine() + " (the collecting machine: no sitting has ended yet)"],
        "sittings": sittings,
    }
    (out / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def recorded_runs(out: Path, logdirs: list[Path]) -> list[dict]:
    """The ``run.json`` of runs collected earlier that are not among the run directories
    ``logdirs`` (``RUNS/<game>/<seed>``) being collected now (a sitting on another machine, or
    a fresh checkout): their recorded files stay as they are and their row stays in the table.
    A run directory that exists always wins: it is collected again, even when it restarted
    from step 0."""
    present = {(f"minatar_{d.parent.name}", d.name) for d in logdirs}
    return [json.loads(path.read_text()) for path in sorted(out.glob("minatar_*/*/run.json"))
            if (path.parent.parent.name, path.parent.name) not in present]


def machine(host: str, cpu: str, cores: int | None) -> str:
    return f"{host}: {cpu} ({cores} cores)"


def this_machine() -> str:
    return machine(socket.gethostname(), cpu_model(), os.cpu_count())


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def minutes(seconds: float | None) -> str:
    return fmt(seconds / 60 if seconds else None, 0)


def table(infos: list[dict], target: int) -> str:
    reference = minatar_reference()
    names = {g: g.replace("_", " ").title() for g in GAMES}
    lines = ["| source | steps | " + " | ".join(names[g] for g in GAMES) + " |", "|---|---|" + "---|" * len(GAMES)]
    for key in ("random", "random_minimal", "port_500k", "port_1m", "dqn_1m", "dqn_5m"):
        ref = reference[key]
        steps = f"{ref['steps'] / 1e6:g}M" if ref["steps"] else "–"
        lines.append(f"| {ref['label']} | {steps} | " + " | ".join(f"{ref['scores'][g]:g}" for g in GAMES) + " |")
    by_game = {g: [i for i in infos if i["task"] == f"minatar_{g}"] for g in GAMES}
    cells, steps_cells, walls, fastest = [], [], [], []
    for game in GAMES:
        runs = [i for i in by_game[game] if i["last_evals_mean"] is not None]
        if not runs:
            cells.append("not run yet")
            steps_cells.append("–")
            continue
        values = [i["last_evals_mean"] for i in runs]
        spread = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
        reached = min(i["steps_reached"] for i in runs)
        partial = "" if all(i["finished"] for i in runs) else " (partial)"
        cells.append(f"**{np.mean(values):.1f}**{spread} ({len(runs)} seed{'s' if len(runs) > 1 else ''}, "
                     f"at {reached / 1e3:.0f}k{partial})")
        walls += [i["seconds_per_100k_steps"] for i in runs if i["seconds_per_100k_steps"]]
        fastest += [i["seconds_per_100k_steps_fastest"] for i in runs if i["seconds_per_100k_steps_fastest"]]
    lines.append(f"| **Reverie** `--preset minatar` (minimal actions, sticky 0.1, eval returns, mean of the last {LAST} "
                 f"evaluations of 5 episodes; ± the sample std over seeds) | ≤ {target / 1e3:.0f}k | " + " | ".join(cells) + " |")
    wall = "–" if not walls else f"{walls[0] / 60:.0f} min (one run)" if len(walls) == 1 else \
        f"{np.median(walls) / 60:.0f} min (median over {len(walls)} runs, range {min(walls) / 60:.0f}–{max(walls) / 60:.0f})"
    if fastest:
        wall += (f" over whole runs, waits for the CPU included; {np.median(fastest) / 60:.0f} min in each run's "
                 f"least-contended stretch (the fastest tenth of its 10k-step segments; median over {len(fastest)} "
                 f"run{'s' if len(fastest) > 1 else ''}); a sitting that ran more runs than cores shows here "
                 f"as slower runs (each sitting's load is in its run's `run.json`)")
    return "\n".join(lines), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/minatar")
    parser.add_argument("--out", default="benchmarks/results/learning/minatar")
    parser.add_argument("--steps", type=int, default=250_000, help="the study's target steps per run")
    args = parser.parse_args()
    runs, out = ROOT / args.runs, ROOT / args.out
    logdirs = sorted(p for p in runs.glob("*/*") if (p / "config.yaml").exists())
    kept = recorded_runs(out, logdirs)
    if not logdirs and not kept:
        print(f"no runs under {runs} and none recorded under {out}", file=sys.stderr)
        return 1
    for info in kept:
        print(f"kept the recorded {info['task']} seed {info['seed']} ({info['steps_reached']:,} steps): "
              f"its run directory is not under {runs}")
    infos = [collect_run(d, out / f"minatar_{d.parent.name}" / d.name, args.steps) for d in logdirs]
    infos = sorted(infos + kept, key=lambda i: (i["task"], i["seed"]))
    rows, wall = table(infos, args.steps)
    partial = [i for i in infos if not i["finished"]]
    machines = sorted({m for i in infos for m in i["machines"]})
    status = (f"**PARTIAL — not final results.** {len(partial)} of {len(infos)} runs are short of "
              f"{args.steps:,} steps (steps reached per run below); the study continues in later sittings."
              if partial else f"All {len(infos)} runs reached {args.steps:,} steps.")
    per_run = "\n".join(
        f"| {i['task']} | {i['seed']} | {i['steps_reached']:,} | {'yes' if i['finished'] else 'no'} | "
        f"{fmt(i['last_evals_mean'], 2)} | {fmt(i['best_eval_mean'], 2)} | {fmt(i['wall_seconds'] / 3600, 2)} h | "
        f"{minutes(i['seconds_per_100k_steps'])} min | {minutes(i['seconds_per_100k_steps_fastest'])} min |"
        for i in infos)
    heads = ("\n\n`heads.md`: what each run's reward head predicts at rewarded steps of its replay, its actor's "
             "entropy there, and the objects its decoder misses (`benchmarks/minatar_heads.py`)."
             if (out / "heads.md").exists() else "")
    heads += ("\n\n`diagnosis.md`: why the games that were not learned fail, with the measurements behind it."
              if (out / "diagnosis.md").exists() else "")
    text = f"""# MinAtar study (issue #17)

Collected {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/minatar_collect.py` from the runs of
`benchmarks/minatar_study.py` (`reverie train --task minatar_<game> --preset minatar --seed S --steps {args.steps}`,
`--jobs` runs at a time, 1 torch thread each).

{status}

Reference rows are read off the sources' figures (approximate); the random rows were measured with
`minatar` 1.0.15 (6 actions, and each game's minimal set, which the `minatar` preset uses). Young &
Tian's DQN numbers are training returns with 6 actions; the other DreamerV2 port used the minimal
action sets.

{rows}

Wall time per 100k agent steps on this machine: {wall}. Machines: {'; '.join(machines) or '–'}.
The machine is shared: wall times include waiting for the CPU (each run's `run.json` has the load at
the start and end of every sitting).

| task | seed | steps reached | finished | last {LAST} evals (mean) | best eval | wall time | per 100k steps | per 100k, least contended |
|---|---|---|---|---|---|---|---|---|
{per_run}

Curves: `curves.png` (eval return; mean over seeds, ±1 sample std shaded; dashed and dotted lines are the
reference rows), `world_model.png` (world-model losses). Per run: `curve.csv`, `metrics.jsonl`,
`config.yaml`, `run.json`. Redraw with `reverie plot {args.out} --out curves.png`.{heads}
"""
    (out / "README.md").write_text(text)
    reverie = str(Path(sys.executable).with_name("reverie"))
    for kind, name in (("curves", "curves.png"), ("world_model", "world_model.png")):
        subprocess.run([reverie, "plot", str(out), "--kind", kind, "--out", str(out / name)], check=True)
    print(f"wrote {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
