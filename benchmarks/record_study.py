"""Record a study's runs into the repository: every run directory under ROOT (a ``reverie
sweep`` root, or any folder of ``reverie train`` runs) into a results folder OUT that
``reverie scores`` and ``reverie plot`` read as they read the runs themselves.

    .venv/bin/python -m benchmarks.record_study runs/minatar benchmarks/results/learning/minatar \\
        --last 15 --reference src/reverie/data/minatar_reference.csv --local

Each run (``reverie.report.rundirs.load_runs``) goes to ``OUT/<path below ROOT>/``, so a
sweep's ``ROOT/<preset>/<task>/<seed>`` keeps its variant folder and ``reverie scores OUT``
sees the same variants as ``reverie scores ROOT``:

- ``config.yaml``: the resolved config the run trained with;
- ``metrics.jsonl``: every evaluation row, every training-metrics row, and the training
  episodes' returns averaged per ``--window`` steps (``episode/return``, ``episode/return_std``,
  ``episodes``): the per-episode rows are what makes a run's file large;
- ``curve.csv``: step, mean/std/count of the eval returns there, and the training-episode
  window ending there;
- ``run.json``: steps reached against the target (``--steps``, else the config's
  ``run.steps``), finished or not, wall seconds (the trainer's clock in ``status.json``,
  summed over its invocations), seconds per 100k steps over the whole run and in its
  least-contended stretch (``segment_seconds``), the final and best eval score (the final
  one also of the sampled-action policy, ``eval/return_sample``, where the run has it), and with
  ``--local`` the host, CPU and cores of this machine (the runs do not record theirs), and
  the run's ``reverie eval`` invocations (``eval_runs``: per checkpoint, policy and invocation, the
  episodes' mean and std);
- ``eval.jsonl``, where the run has one: ``reverie eval``'s episodes, copied as they are.

Runs recorded in OUT earlier whose run directory is not under ROOT now (``runs/`` is not in
git) keep their files, and their rows. A run folder copied into OUT by hand, without a
``run.json``, is recorded in place from its own files. An OUT that holds another recorded
study (a folder below it with a ``summary.json``) is refused: its runs would count as this
one's. Then, from OUT: the scores of ``reverie scores``, of the finished runs only
(``reports_of_runs``; with ``--reference CSV``, per task the mean ± sample std over seeds beside the CSV's rows at no more than twice the study's steps,
``scores.format_reference_markdown``; a row for the sampled-action policy where the runs
evaluated it), a table of every run at the steps it reached, the figures of ``reverie plot``
(``curves.png``, ``world_model.png``) and ``summary.json`` (per task the finished runs' seeds and
their final scores; for MinAtar's games also under ``games``, mode and sampled policy apart, the
shape of the MinAtar study). The text goes into ``OUT/README.md`` between the ``BEGIN``/``END``
markers, so what a person wrote around it stays; a README without them gets the block appended.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from reverie.errors import ReverieError
from reverie.report import plot, scores
from reverie.report.rundirs import Run, final_score, group_variants, load_runs, variant_label
from reverie.sweep.plan import PLAN_FILE, Plan
from reverie.sweep.state import read_status, status_finished

WINDOW = 5000  # agent steps per training-episode window
SEGMENT = 10_000  # agent steps per segment of segment_seconds
BEGIN = "<!-- BEGIN record_study: written by `python -m benchmarks.record_study`; edits here are overwritten -->"
END = "<!-- END record_study -->"


def eval_points(rows: list[dict], key: str = "eval/return") -> list[tuple[int, float, float, int]]:
    """``(step, mean, std, episodes)`` of the eval returns, one per evaluation step (``key``:
    ``eval/return_sample`` for the sampled-action policy's)."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        if row.get(key) is not None:
            by_step.setdefault(int(row["step"]), []).append(float(row[key]))
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


def segment_seconds(rows: list[dict], segment: int = SEGMENT) -> list[float]:
    """Trainer seconds per ``segment`` agent steps, one value per whole segment from
    ``segment`` on (the first one holds the prefill, which does not train).

    The trainer's clock (``time``) is summed over invocations; steps replayed after a resume
    appear twice in ``metrics.jsonl``, and the later invocation's rows (the ones the run kept)
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


def eval_runs(rows: list[dict]) -> list[dict]:
    """The ``reverie eval`` invocations in a run's ``eval.jsonl`` rows (``Run.evals``, one per
    episode), one entry per checkpoint step and policy: ``step``, ``policy``, ``episodes``,
    ``mean``, ``std`` (sample std over episodes). An invocation's episodes count from 0, so an
    episode 0 starts a new entry: two invocations at one step stay apart (they replay the same
    episode seeds)."""
    groups: list[dict] = []
    for row in rows:
        key = (row["step"], row.get("policy", "mode"))
        if not groups or row["episode"] == 0 or (groups[-1]["step"], groups[-1]["policy"]) != key:
            groups.append({"step": key[0], "policy": key[1], "returns": []})
        groups[-1]["returns"].append(float(row["return"]))
    return [{"step": g["step"], "policy": g["policy"], "episodes": len(g["returns"]),
             "mean": round(float(np.mean(g["returns"])), 3),
             "std": round(float(np.std(g["returns"], ddof=1)), 3) if len(g["returns"]) > 1 else 0.0}
            for g in groups]


def this_machine() -> str:
    """``host: CPU model (N cores)`` of the machine this runs on."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        cpu = platform.processor() or "unknown CPU"
    return f"{socket.gethostname()}: {cpu} ({os.cpu_count()} cores)"


def record_run(run: Run, out: Path, target: int | None, last: int, window: int = WINDOW,
               machine: str | None = None) -> dict:
    """Write one run's ``config.yaml``, condensed ``metrics.jsonl``, ``curve.csv`` and ``run.json``
    into ``out``; returns what ``run.json`` holds."""
    status = read_status(run.path)
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    evals, windows = eval_points(run.metrics), episode_windows(run.metrics, window)
    kept = [r for r in run.metrics if any(k.startswith(("eval/", "train/")) for k in r)]
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != run.path.resolve():  # a hand-copied folder is recorded in place
        shutil.copy(run.path / "config.yaml", out / "config.yaml")
        if (run.path / "eval.jsonl").is_file():
            shutil.copy(run.path / "eval.jsonl", out / "eval.jsonl")
    merged = sorted(kept + windows, key=lambda r: (r["step"], "episode/return" in r))
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in merged))
    window_mean = {w["step"]: w["episode/return"] for w in windows}
    lines = ["step,eval_return_mean,eval_return_std,eval_episodes,train_episode_return_mean"]
    for step, mean, std, n in evals:
        train = window_mean.get(step)
        lines.append(f"{step},{mean:.3f},{std:.3f},{n},{'' if train is None else f'{train:.3f}'}")
    (out / "curve.csv").write_text("\n".join(lines) + "\n")
    target = target or int(config["run"]["steps"])
    step, wall = int(status.get("step", 0)), float(status.get("wall_seconds", 0.0))
    segments = segment_seconds(run.metrics)
    final = final_score(run, last)
    info = {
        "task": run.task, "seed": run.seed, "steps_reached": step, "steps_target": target,
        "action_repeat": int(config.get("env", {}).get("action_repeat", 1)),
        "finished": status_finished(status, target), "wall_seconds": wall,
        "seconds_per_100k_steps": round(wall / step * 1e5, 1) if step else None,
        # the least-contended stretch: the fastest tenth of the 10k-step segments, per 100k steps
        "seconds_per_100k_steps_fastest": round(float(np.quantile(segments, 0.1)) * 1e5 / SEGMENT, 1)
        if segments else None,
        "final_score": final[0] if final else None, "final_source": final[1] if final else None,
        "final_score_sample": sampled_score(run.metrics, last),
        "best_eval_mean": max((m for _, m, _, _ in evals), default=None),
        "eval_runs": eval_runs(run.evals),
    }
    if machine:
        info["machine"] = machine
    (out / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def sampled_score(rows: list[dict], last: int) -> float | None:
    """Mean of the last ``last`` evaluation episodes of the sampled-action policy
    (``eval/return_sample``, written with ``run.eval_sample``); ``None`` for a run without them."""
    returns = [float(r["eval/return_sample"]) for r in rows if r.get("eval/return_sample") is not None]
    return float(np.mean(returns[-last:])) if returns else None


def recorded_earlier(out: Path, recorded_now: set[Path]) -> list[Path]:
    """Run folders in ``out`` with a ``run.json`` that are not among ``recorded_now``: runs recorded
    earlier whose run directory is gone. They stay as they are; a run directory that exists
    always wins (it is recorded again, even when it restarted from step 0)."""
    if not out.is_dir():
        return []
    return sorted(path.parent for path in out.rglob("run.json") if path.parent not in recorded_now)


def copied_by_hand(out: Path, recorded_now: set[Path]) -> list[Run]:
    """Runs in ``out`` without a ``run.json`` that are not among ``recorded_now``: run folders
    copied into OUT by hand (their raw ``config.yaml``, ``metrics.jsonl``, ``status.json``), to be
    recorded in place from their own files."""
    if not out.is_dir():
        return []
    return [run for run in load_runs([out]) if run.path not in recorded_now and not (run.path / "run.json").exists()]


def refuse_nested_studies(out: Path) -> None:
    """``ReverieError`` where a folder below ``out`` holds a ``summary.json``: another study recorded
    there, whose runs this one would take for its own (``recorded_earlier``) and record again."""
    nested = sorted(path.parent for path in out.rglob("summary.json") if path.parent != out) if out.is_dir() else []
    if nested:
        raise ReverieError(f"{out} holds another recorded study ({nested[0]}): record this one into a folder "
                           f"of its own, e.g. {out / 'study'}")


def sweep_command(root: Path) -> str | None:
    """The ``reverie sweep`` command of the plan (``sweep.yaml``) in ROOT or, for ROOT a
    sweep's preset folder, its parent; ``None`` without one."""
    found = [folder for folder in (root, root.parent) if (folder / PLAN_FILE).is_file()]
    if not found:
        return None
    plan = Plan.read(found[0])
    parts = ["reverie sweep", f"--tasks {','.join(plan.tasks)}", f"--seeds {','.join(map(str, plan.seeds))}",
             f"--preset '{';'.join(plan.presets)}'"] + [f"--set {item}" for item in plan.overrides]
    if plan.steps:
        parts.append(f"--steps {plan.steps}")
    return " ".join(parts + [f"--logdir {found[0]}"])


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def minutes(seconds: float | None) -> str:
    return "–" if not seconds else f"{seconds / 60:.0f} min"


def run_table(infos: dict[Path, dict], out: Path, last: int) -> str:
    lines = [f"| run | steps reached | finished | final score (last {last} eval episodes) | sampled policy, same "
             "episodes | best eval | wall time | per 100k steps | per 100k, least contended |", "|---" * 9 + "|"]
    for path, i in sorted(infos.items()):
        lines.append(f"| `{path.relative_to(out)}` | {i['steps_reached']:,} | {'yes' if i['finished'] else 'no'} | "
                     f"{fmt(i.get('final_score', i.get('last_evals_mean')))} | {fmt(i.get('final_score_sample'))} | "
                     f"{fmt(i['best_eval_mean'])} | "
                     f"{i['wall_seconds'] / 3600:.2f} h | {minutes(i['seconds_per_100k_steps'])} | "
                     f"{minutes(i.get('seconds_per_100k_steps_fastest'))} |")
    return "\n".join(lines)


def eval_runs_table(infos: dict[Path, dict], out: Path) -> str | None:
    """The recorded runs' ``reverie eval`` invocations (``run.json``'s ``eval_runs``), one row
    each, or None where no run has one."""
    rows = [f"| `{path.relative_to(out)}` | {e['step']:,} | {e['policy']} | {e['episodes']} | "
            f"{e['mean']:.2f} ± {e['std']:.2f} |"
            for path, i in sorted(infos.items()) for e in i.get("eval_runs", [])]
    if not rows:
        return None
    head = ("`reverie eval --logdir RUN --episodes N` of the checkpoints (each run's `eval.jsonl`, copied; "
            "mean ± sample std over the episodes):\n\n| run | checkpoint step | policy | episodes | return |\n"
            + "|---" * 5 + "|")
    return head + "\n" + "\n".join(rows)


def score_tables(reports: dict[str, scores.Report], reference: list[dict] | None, variants: dict,
                 infos: dict[Path, dict]) -> str:
    """Per variant, the scores table (beside ``reference`` when given) and, for runs that
    evaluated the sampled-action policy too, one more row with its scores (``infos``: each
    recorded run's ``run.json``, by its folder)."""
    parts = []
    for variant, report in reports.items():
        head = f"Variant `{variant_label(variant)}`:\n\n" if len(reports) > 1 else ""
        table = scores.format_reference_markdown(report, reference) if reference is not None \
            else scores.format_markdown(report)
        parts.append(head + table + sampled_row(variants[variant], [row.task for row in report.rows], infos,
                                                in_table=reference is not None))
    return "\n\n".join(parts)


def sampled_row(groups: dict[str, dict], tasks: list[str], infos: dict[Path, dict], in_table: bool) -> str:
    """The runs' ``final_score_sample`` per task, mean ± sample std over seeds: a row of the
    reference table (``in_table``) or a line below a plain one; ``""`` when no run has one."""
    cells = []
    for task in tasks:
        values = [v for v in (infos[run.path].get("final_score_sample") for run in groups[task].values())
                  if v is not None]
        cells.append(scores.seeds_cell(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1
                                       else None, len(values)) if values else "–")
    if all(cell == "–" for cell in cells):
        return ""
    if not in_table:
        return "\n\nSampled-action policy (`eval/return_sample`): " + "; ".join(f"{t} {c}" for t, c in zip(tasks, cells))
    return "\n| Reverie, sampled actions (eval/return_sample in metrics.jsonl) | | " + " | ".join(cells) + " |"


def near_steps(reference: list[dict], steps: int | None) -> tuple[list[dict], str]:
    """The reference rows a study of ``steps`` agent steps is compared with: those without
    steps (random) and those at no more than twice its steps; and a sentence naming what was left out."""
    if steps is None:
        return reference, ""
    kept = [row for row in reference if not row["steps"] or row["steps"] <= 2 * steps]
    left = len(reference) - len(kept)
    return kept, (f" {left} reference rows at more than twice the study's {steps:,} steps are left out "
                  "(`reverie scores --reference` prints them)." if left else "")


def write_readme(out: Path, block: str, title: str) -> None:
    """Put ``block`` between the markers of ``OUT/README.md`` (a new README gets ``title``)."""
    path = out / "README.md"
    text = path.read_text() if path.exists() else f"# {title}\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}"
    else:
        print(f"{path} has no record_study markers: appended the block; remove the old table by hand")
        text = f"{text.rstrip()}\n\n{BEGIN}\n{block}\n{END}\n"
    path.write_text(text)


def study_status(infos: dict[Path, dict]) -> str:
    """The line that says whether the study is complete; the scores count only finished runs."""
    partial = [i for i in infos.values() if not i["finished"]]
    if not partial:
        return f"All {len(infos)} runs reached their target steps."
    return (f"**PARTIAL — not final results.** {len(partial)} of {len(infos)} runs are short of their target "
            "steps. The scores and `summary.json` count only the finished runs (`summary.json` names their "
            "seeds); the run table lists every run at the steps it reached.")


def task_finals(infos) -> dict:
    """``{"steps": S, "frames": F, "tasks": {task: {"seeds": [...], "eval": [...]}}}``: each
    finished run's final score by task, seeds ascending, with ``eval_sample`` beside ``eval``
    when any run evaluated the sampled-action policy (``None`` for a run that did not); a run
    short of its target is left out, so every score is one at the study's steps. ``steps`` is
    the agent steps every run trains for and ``frames`` the same in env frames (× action
    repeat); either is ``None`` when the runs' targets differ."""
    tasks: dict[str, dict[str, list]] = {}
    sampled = any(i.get("final_score_sample") is not None for i in infos)
    for info in sorted((i for i in infos if i["finished"]), key=lambda i: (i["task"], i["seed"])):
        task = tasks.setdefault(info["task"], {"seeds": [], "eval": []} | ({"eval_sample": []} if sampled else {}))
        task["seeds"].append(info["seed"])
        task["eval"].append(info["final_score"])
        if sampled:
            task["eval_sample"].append(info.get("final_score_sample"))
    steps = {i["steps_target"] for i in infos}
    frames = {i["steps_target"] * i.get("action_repeat", 1) for i in infos}
    return {"steps": steps.pop() if len(steps) == 1 else None, "frames": frames.pop() if len(frames) == 1 else None,
            "tasks": tasks}


def minatar_games(tasks: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """The MinAtar study's view of ``task_finals``' tasks: ``{game: {"seeds", "eval_mode",
    "eval_sample"}}`` for every ``minatar_<game>`` task (the mode policy is ``eval/return``)."""
    return {task.removeprefix("minatar_"): {"seeds": t["seeds"], "eval_mode": t["eval"],
                                           "eval_sample": t.get("eval_sample", [None] * len(t["seeds"]))}
            for task, t in tasks.items() if task.startswith("minatar_")}


def record(root: Path, out: Path, steps: int | None, last: int, window: int, local: bool,
           reference: Path | None) -> dict:
    """Record every run under ``root`` into ``out`` and write its README block, figures and
    ``summary.json``; returns the summary. A ``root`` that does not exist (a fresh checkout)
    redoes them from the runs recorded earlier."""
    refuse_nested_studies(out)
    runs = load_runs([root]) if root.exists() else []
    machine = this_machine() if local else None
    infos = {}
    for run in runs:
        dest = out / run.path.absolute().relative_to(root.absolute())
        infos[dest] = record_run(run, dest, steps, last, window, machine)
    for path in recorded_earlier(out, set(infos)):
        infos[path] = json.loads((path / "run.json").read_text())
        print(f"kept the recorded {path.relative_to(out)}: its run directory is not under {root}")
    for run in copied_by_hand(out, set(infos)):
        infos[run.path] = record_run(run, run.path, steps, last, window)
        print(f"recorded {run.path.relative_to(out)} in place from its own files: it had no run.json")
    if not infos:
        raise ReverieError(f"no runs under {root} and none recorded under {out}")
    recorded = load_runs([out])
    variants = group_variants(recorded)
    plot.plot_curves(variants, out / "curves.png")
    if any(run.series(key)[0].size for seeds in variants.values() for task in seeds.values()
           for run in task.values() for key in plot.WORLD_MODEL_KEYS):
        plot.plot_world_model(variants, out / "world_model.png")
    finished = [run for run in recorded if infos[run.path]["finished"]]
    reports = scores.reports_of_runs(finished, f"{out} (finished runs)", last) if finished else {}
    command = sweep_command(root)
    machines = sorted({i["machine"] for i in infos.values() if i.get("machine")})
    finals = task_finals(infos.values())
    ref, left_out = near_steps(scores.read_reference_csv(reference), finals["steps"]) if reference else (None, "")
    block = "\n\n".join([
        f"Recorded {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from `{root}` by `python -m benchmarks.record_study`"
        + (f"; the runs: `{command}`." if command else "."),
        f"Machine: {'; '.join(machines)}." if machines else
        "Machine: not recorded (runs do not record theirs; `--local` records the recording machine's).",
        study_status(infos) + left_out,
        score_tables(reports, ref, group_variants(finished), infos) if reports else
        "No run has reached its target steps yet: no scores (the run table below has each run's).",
        run_table(infos, out, last),
        *filter(None, [eval_runs_table(infos, out)]),
        "Figures: `curves.png` (eval return, mean over seeds, ±1 sample std shaded)"
        + (", `world_model.png` (world-model losses)" if (out / "world_model.png").exists() else "")
        + f". Per run: `config.yaml`, `metrics.jsonl`, `curve.csv`, `run.json` (and `eval.jsonl` where `reverie eval` "
        f"ran). Redraw with `reverie plot {out}`.",
    ])
    write_readme(out, block, out.name)
    games = minatar_games(finals["tasks"])
    summary = {"root": str(root), "command": command, "last": last, **finals, **({"games": games} if games else {}),
               "variants": {variant_label(v): json.loads(scores.format_json(r)) for v, r in reports.items()},
               "runs": {str(p.relative_to(out)): i for p, i in sorted(infos.items())}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.record_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a sweep root or a folder of run directories")
    parser.add_argument("out", type=Path, help="the results folder, e.g. benchmarks/results/learning/<study>")
    parser.add_argument("--steps", type=int, help="the study's target steps per run (default: each run's run.steps)")
    parser.add_argument("--last", type=int, default=10, help="eval episodes in the final score (reverie scores --last)")
    parser.add_argument("--window", type=int, default=WINDOW, help="agent steps per training-return window")
    parser.add_argument("--reference", type=Path, help="CSV of published scores (label, steps, one column per task)")
    parser.add_argument("--local", action="store_true", help="the runs ran on this machine: record its host and CPU")
    args = parser.parse_args()
    try:
        record(args.root, args.out, args.steps, args.last, args.window, args.local, args.reference)
    except ReverieError as error:
        print(f"record_study: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
