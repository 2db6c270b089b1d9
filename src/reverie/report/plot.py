"""Figures from run directories: learning curves (Figures 4, F1), world-model losses, and the
per-game normalised-difference bars of Figure E1. ``reverie plot`` is the entry point.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot,
so plotting needs no display and keeps no global state. Sizes are fixed (no tight bounding
box) so that an output's pixel size is ``figure_size(...)`` × ``DPI``; legends sit in a strip
below the panels, outside the data.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from reverie.atari_games import TABLE_NAMES, canonical_game, table_k1
from reverie.errors import ReverieError
from reverie.report.rundirs import variant_label

DPI = 100
PANEL_INCHES = (4.0, 3.0)  # width, height of one panel
LEGEND_INCHES = 0.7  # strip below the panels for the figure legend
MAX_COLUMNS = 4
FORMATS = (".png", ".svg")
# Paper reference lines (Table K1 final scores at 200M frames): column, label, colour.
REFERENCES = (("dreamerv2", "DreamerV2 (paper, 200M frames)", "#d62728"), ("rainbow", "Rainbow (paper, 200M frames)", "#2ca02c"),
              ("iqn", "IQN (paper, 200M frames)", "#9467bd"))
# MinAtar references (data/minatar_reference.csv): the random policies' lines (key, colour, line
# style), and the published sources' points at their own steps (key prefix, colour, marker).
MINATAR_RANDOM = (("random", "#7f7f7f", ":"), ("random_minimal", "#7f7f7f", "-."))
MINATAR_SOURCES = (("port_", "#d62728", "o"), ("dqn_", "#2ca02c", "s"))
# One colour per preset variant of a study (none of the reference lines' colours).
VARIANT_COLORS = ("#1f77b4", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WORLD_MODEL_KEYS = {"train/image_loss": "image loss", "train/reward_loss": "reward loss",
                    "train/kl_loss": "KL loss", "train/model_kl": "KL(posterior ‖ prior)"}


def grid_shape(panels: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``panels`` panels, at most ``MAX_COLUMNS`` wide."""
    columns = min(max(panels, 1), MAX_COLUMNS)
    return math.ceil(max(panels, 1) / columns), columns


def figure_size(panels: int) -> tuple[float, float]:
    """Inches of a grid figure (curves, world model); pixels are these × ``DPI``."""
    rows, columns = grid_shape(panels)
    return PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + LEGEND_INCHES


def bars_size(games: int) -> tuple[float, float]:
    """Inches of the bar chart: one 0.25-inch row per game plus room for title and axis."""
    return 7.0, 0.25 * games + 1.5


def _grid(panels: int):
    from matplotlib.figure import Figure

    rows, columns = grid_shape(panels)
    figure = Figure(figsize=figure_size(panels), dpi=DPI)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def _save(figure, out: str | Path, legend: bool = True) -> Path:
    """Legend strip below the panels (one entry per label), layout, write PNG or SVG."""
    out = Path(out)
    handles = {}
    for ax in figure.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    bottom = LEGEND_INCHES / figure.get_figheight() if legend else 0.0
    if legend and handles:
        bottom = max(bottom, _fit_legend(figure, handles))
    figure.tight_layout(rect=(0, bottom, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, format=out.suffix[1:])
    return out


def _fit_legend(figure, handles: dict) -> float:
    """Place the figure legend in as many columns (at most 4) as fit the figure's width, so
    long labels ("DreamerV2 (paper, 200M frames)") are never cut at the sides; returns the
    strip height it needs, as a fraction of the figure height."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    for columns in range(min(len(handles), MAX_COLUMNS), 0, -1):
        box = figure.legend(list(handles.values()), list(handles), loc="lower center", frameon=False,
                            ncol=columns, fontsize="small")
        extent = box.get_window_extent(renderer)
        if extent.width <= 0.98 * figure.bbox.width or columns == 1:
            return (extent.height + 0.1 * figure.dpi) / figure.bbox.height
        box.remove()
    return 0.0


def _task_title(task: str) -> tuple[str, str | None]:
    """Panel title and the ROM id when the task is one of the paper's 55 Atari games."""
    if task.startswith("atari_"):
        try:
            rom = canonical_game(task)
            return TABLE_NAMES[rom], rom
        except ReverieError:
            pass
    if task.startswith("minatar_"):
        return f"MinAtar {task[len('minatar_'):].replace('_', ' ').title()}", None
    return task, None


def minatar_points(game: str, upto: float) -> dict[str, tuple[str, list[tuple[int, float]]]]:
    """Each published source's returns for ``game`` at its own steps, ``{key prefix: (label,
    [(steps, score), ...])}`` in order of steps, those at no more than twice ``upto`` (the curves' last
    frame; MinAtar steps are frames): a curve is compared at equal steps, as the results tables
    compare it, not with scores reached at many times its budget."""
    from reverie.envs.minatar import minatar_reference

    table, points = minatar_reference(), {}
    for prefix, _, _ in MINATAR_SOURCES:
        rows = sorted((ref for key, ref in table.items() if key.startswith(prefix)), key=lambda ref: ref["steps"])
        kept = [(ref["steps"], ref["scores"][game]) for ref in rows if ref["steps"] <= 2 * upto and game in ref["scores"]]
        if kept:
            points[prefix] = (f"{rows[0]['label'].split(' (')[0]}, {rows[0]['actions']} actions", kept)
    return points


def _minatar_marks(ax, game: str, upto: float) -> None:
    """The random policy's returns as lines, the published returns as points at their steps
    (``minatar_points``); nothing for a name that is not one of the five games."""
    from reverie.envs.minatar import GAMES, minatar_reference

    if game not in GAMES:
        return
    table = minatar_reference()
    for key, color, style in MINATAR_RANDOM:
        ref = table[key]
        ax.axhline(ref["scores"][game], color=color, linestyle=style, linewidth=1,
                   label=f"{ref['label'].split(' (')[0]}, {ref['actions']} actions")
    sources = minatar_points(game, upto)
    for prefix, color, marker in MINATAR_SOURCES:
        if prefix in sources:
            label, points = sources[prefix]
            ax.plot(*zip(*points), color=color, linestyle="--", linewidth=1, marker=marker, label=f"{label}, at its steps")


def _mean_by_x(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Each eval episode is its own metrics line at the same frame count: average them.
    unique, inverse = np.unique(xs, return_inverse=True)
    return unique, np.bincount(inverse, ys) / np.bincount(inverse)


def seed_curves(runs, metric: str, points: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(frames, mean, std)`` over seeds of ``metric``, each seed interpolated onto a common grid
    spanning the frames all seeds reached; ``std`` is the sample std (ddof 1), as the results
    tables give it, and zero for one seed; ``None`` when no run logged the metric."""
    series = [_mean_by_x(*run.series(metric)) for run in runs]
    series = [(x, y) for x, y in series if len(x)]
    if not series:
        return None
    if len(series) == 1:
        x, y = series[0]
        return x, y, np.zeros_like(y)
    lo, hi = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
    values = np.stack([np.interp(grid, x, y) for x, y in series])
    return grid, values.mean(0), values.std(0, ddof=1)


def _frames_axis(ax) -> None:
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("environment frames")
    ax.grid(alpha=0.3)


def plot_curves(variants: dict[str, dict], out: str | Path, metric: str = "eval/return") -> Path:
    """Learning curves, one panel per task and one line per variant (``{variant: {task: {seed:
    run}}}``, as ``rundirs.group_variants`` gives): mean over seeds, shaded ±1 sample std, and the
    paper's final DreamerV2, Rainbow and IQN scores (Table K1, 200M frames) dashed for the 55
    Atari games; for ``minatar_<game>`` the random policy's returns and the published ones of
    ``data/minatar_reference.csv`` at their own steps, up to twice the curves' (``minatar_points``)."""
    tasks = sorted({task for groups in variants.values() for task in groups})
    figure, axes = _grid(len(tasks))
    table, ylabel = table_k1(), metric.replace("/", " ").replace("_", " ")
    for ax, task in zip(axes, tasks):
        title, rom = _task_title(task)
        counts = sorted({len(groups[task]) for groups in variants.values() if task in groups})
        seeds = "–".join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts))
        ax.set_title(f"{title} ({seeds} seed{'s' if counts != [1] else ''})", fontsize="medium")
        drawn, upto = False, 0.0
        for (variant, groups), color in zip(variants.items(), VARIANT_COLORS * len(variants)):
            curve = seed_curves(list(groups[task].values()), metric) if task in groups else None
            if curve is None:
                continue
            x, mean, std = curve
            name = "Reverie" if len(variants) == 1 else variant_label(variant)
            ax.plot(x, mean, color=color, label=f"{name} (mean over seeds)")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.25, label="±1 sample std over seeds")
            drawn, upto = True, max(upto, float(x[-1]))
        if not drawn:
            ax.text(0.5, 0.5, f"no {metric} logged", ha="center", va="center", transform=ax.transAxes)
        if rom:
            for column, label, color in REFERENCES:
                ax.axhline(table[rom][column], color=color, linestyle="--", linewidth=1, label=label)
        elif task.startswith("minatar_"):
            _minatar_marks(ax, task[len("minatar_"):], upto)
        _frames_axis(ax)
        ax.set_ylabel(ylabel)
    return _save(figure, out)


def plot_world_model(variants: dict[str, dict], out: str | Path) -> Path:
    """World-model losses over training, one panel per loss present in the metrics
    (``WORLD_MODEL_KEYS``), one line per task and variant (mean over its seeds)."""
    runs = [run for groups in variants.values() for seeds in groups.values() for run in seeds.values()]
    keys = [k for k in WORLD_MODEL_KEYS if any(len(run.series(k)[0]) for run in runs)]
    if not keys:
        raise ReverieError(f"no world-model losses ({', '.join(WORLD_MODEL_KEYS)}) in the runs' metrics.jsonl")
    figure, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        for variant, groups in variants.items():
            for task, seeds in groups.items():
                curve = seed_curves(list(seeds.values()), key)
                suffix = f" ({variant_label(variant)})" if len(variants) > 1 else ""
                if curve is not None:
                    ax.plot(curve[0], curve[1], label=_task_title(task)[0] + suffix)
        ax.set_title(WORLD_MODEL_KEYS[key], fontsize="medium")
        ax.set_ylabel(f"{key} (nats)" if "kl" in key else key)
        _frames_axis(ax)
    return _save(figure, out)


def normalized_difference(game: str, score: float, baseline: float) -> float:
    """Figure E1's bar: the difference in gamer-normalised scores, ``(score − baseline) / (gamer − random)``."""
    from reverie.report.scores import normalize

    return normalize(game, score) - normalize(game, baseline)


def plot_bars(scores: dict[str, float], baseline: str, out: str | Path, label: str = "yours") -> Path:
    """Figure E1: per-game difference of gamer-normalised ``scores`` to a Table K1 column, sorted."""
    from matplotlib.figure import Figure

    table = table_k1()
    diffs = sorted((normalized_difference(g, s, table[canonical_game(g)][baseline]),
                    TABLE_NAMES[canonical_game(g)]) for g, s in scores.items())
    if not diffs:
        raise ReverieError("no Atari game of the paper's 55 to plot")
    figure = Figure(figsize=bars_size(len(diffs)), dpi=DPI)
    ax = figure.subplots()
    values = [d for d, _ in diffs]
    ax.barh(range(len(diffs)), values, color=["#2ca02c" if v >= 0 else "#d62728" for v in values])
    ax.set_yticks(range(len(diffs)), [name for _, name in diffs], fontsize="small")
    ax.axvline(0, color="black", linewidth=0.8)
    # Differences span 0.01 to ~1800 (James Bond); symlog keeps small and huge bars readable.
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(f"gamer-normalised score difference, {label} − {baseline} (Table K1)")
    ax.set_title(f"{label} vs {baseline}: {sum(v > 0 for v in values)} of {len(values)} games better")
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, out, legend=False)


def cli_plot(args: argparse.Namespace) -> int:
    """``reverie plot``: curves or world-model losses from LOGDIRs; bars from LOGDIRs or --csv."""
    from reverie.report.rundirs import group_variants, load_runs

    if Path(args.out).suffix.lower() not in FORMATS:
        raise ReverieError(f"--out {args.out}: the file name must end in {' or '.join(FORMATS)}")
    if args.kind == "bars":
        out = plot_bars(_bar_scores(args), args.baseline, args.out)
    else:
        if args.csv:
            raise ReverieError("--csv is only for --kind bars; curves need run directories")
        variants = group_variants(load_runs(args.logdirs))
        out = plot_world_model(variants, args.out) if args.kind == "world_model" else \
            plot_curves(variants, args.out, args.metric)
    print(f"wrote {out}")
    return 0


def _bar_scores(args: argparse.Namespace) -> dict[str, float]:
    """Final scores per game for the bars; from runs, the final score uses the last ``--last`` evals."""
    from reverie.report.scores import read_scores_csv, report_from_runs

    if bool(args.csv) == bool(args.logdirs):
        raise ReverieError("--kind bars needs either run directories or --csv FILE (not both)")
    if args.csv:
        return read_scores_csv(args.csv)[0]
    report = report_from_runs(args.logdirs, last=args.last)
    return {row.game: row.score for row in report.rows if row.game}
