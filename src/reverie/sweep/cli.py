"""``reverie sweep``: plan, validate, schedule, summarise; ``--status ROOT`` only reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reverie import runtime
from reverie.errors import ConfigError, ReverieError
from reverie.sweep.plan import PLAN_FILE, Plan, make_plan, preset_dirname, write_plan
from reverie.sweep.ray_runner import schedule, start_ray
from reverie.sweep.state import LOCK_FILE, StudyLock, is_finished
from reverie.utils import atomic_write_text

PLOTS_DIR = "plots"



def summarize(plan: Plan, out=None) -> list[Path]:
    """Per preset variant: print the per-game and the four aggregate scores (Table 1) and
    write ``ROOT/plots/``: ``scores_<preset>.md``, ``curves_<preset>.png`` (learning curves per
    game) and, for Atari games, ``bars_<preset>.png`` (Figure E1, against Rainbow). With
    several variants also ``scores_variants.md`` and ``curves_variants.png``: the variants side
    by side. Only finished runs count. Returns the files written."""
    from reverie.report.plot import plot_bars, plot_curves
    from reverie.report.rundirs import group_variants, load_runs
    from reverie.report.scores import (
        format_markdown,
        format_markdown_variants,
        print_table,
        reports_from_runs,
    )

    out, written, finished = out or sys.stdout, [], []
    for preset in plan.presets:
        logdirs = [str(plan.logdir(r)) for r in plan.runs if r.preset == preset and is_finished(plan.logdir(r), r.total_steps)]
        if not logdirs:
            continue
        finished += logdirs
        name = preset_dirname(preset)
        print(f"\nPreset {preset}: {len(logdirs)} finished runs", file=out)
        try:
            written.append(plot_curves(group_variants(load_runs(logdirs)), plan.root / PLOTS_DIR / f"curves_{name}.png"))
            report = next(iter(reports_from_runs(logdirs).values()))
        except ReverieError as error:  # e.g. runs too short to have finished an episode
            print(f"no scores: {error}", file=out)
            continue
        print_table(report, file=out)
        written.append(plan.root / PLOTS_DIR / f"scores_{name}.md")
        atomic_write_text(written[-1], format_markdown(report) + "\n")
        games = {row.game: row.score for row in report.rows if row.game}
        if games:
            written.append(plot_bars(games, "rainbow", plan.root / PLOTS_DIR / f"bars_{name}.png"))
    variants = group_variants(load_runs(finished)) if finished else {}
    if len(variants) > 1:  # the runs of each preset lie in ROOT/<preset dir>: one variant each
        written.append(plot_curves(variants, plan.root / PLOTS_DIR / "curves_variants.png"))
        try:
            written.append(plan.root / PLOTS_DIR / "scores_variants.md")
            atomic_write_text(written[-1], format_markdown_variants(reports_from_runs(finished)) + "\n")
        except ReverieError as error:
            written.pop()
            print(f"no comparison of the variants: {error}", file=out)
    if written:
        print(f"\nwrote {', '.join(str(p) for p in written)}", file=out)
    return written




def cli_sweep(args: argparse.Namespace) -> int:
    """``reverie sweep``: plan, validate, schedule, summarise; ``--status ROOT`` only reports.

    Exit status 0 when every run finished, 1 when some failed after their retries."""
    if args.status:
        from reverie.sweep.status import format_status

        print(format_status(Path(args.status)))
        return 0
    if not args.logdir:
        raise ConfigError("--logdir ROOT is required: the study's root folder")
    if args.local and args.address:
        raise ConfigError("--local and --address exclude each other")
    if args.retries < 0 or (args.max_concurrent is not None and args.max_concurrent < 1):
        raise ConfigError("--retries must be >= 0 and --max-concurrent >= 1")
    if args.cpus_per_run < 0 or (args.gpus_per_run or 0) < 0:
        raise ConfigError("--cpus-per-run and --gpus-per-run must be >= 0")
    plan = make_plan(args.logdir, args.tasks, args.seeds, args.preset, args.set, args.steps, args.recorded)
    plan.root.mkdir(parents=True, exist_ok=True)
    lock = StudyLock(plan.root)
    if not lock.acquire():
        raise ReverieError(f"another `reverie sweep` is running on {plan.root} "
                           f"(it holds {plan.root / LOCK_FILE}); see `reverie sweep --status {plan.root}`")
    try:
        write_plan(plan)
        print(f"sweep: plan written to {plan.root / PLAN_FILE}", flush=True)
        import ray

        runtime.prepare_ray()
        start_ray(plan.root, args.address)
        try:
            outcome = schedule(plan, args.cpus_per_run, args.gpus_per_run, args.max_concurrent, args.retries,
                               log=lambda text: print(text, flush=True))
        finally:
            ray.shutdown()
        summarize(plan)
    finally:
        lock.release()
    if outcome.recorded:
        print(f"\nsweep: {len(outcome.recorded)} runs are finished in {plan.recorded}, not under {plan.root}: "
              "the scores above leave them out; `python -m benchmarks.record_study` counts them")
    print(f"\nsweep: {len(outcome.finished)}/{len(plan.runs)} runs finished"
          + (f"; {len(outcome.failed)} failed: {', '.join(outcome.failed)}" if outcome.failed else ""))
    return 1 if outcome.failed else 0
