"""The paper's Atari evaluation (section 3, "Summary of metrics"; Table 1; Table K1).

Scores are normalised per game by a random policy and either the human gamer or the human
world record of Table K1 (shipped as ``reverie/data/atari_table_k1.csv``, read through
``reverie.atari_games``), then aggregated over the 55 games four ways:

    gamer-normalised   = (score − random) / (gamer − random)
    record-normalised  = (score − random) / (record − random)
    gamer_median, gamer_mean     median / mean of gamer-normalised scores
    record_mean                  mean of record-normalised scores
    clipped_record_mean          mean of min(record-normalised, 1)

The clip is one-sided: the paper clips "to not exceed a value of 1", and Table 1's Rainbow
value (0.17) is only reproduced without a clip at 0 (Rainbow's Skiing is below random).
Details and the comparison with Table 1 are in docs/SCORES.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reverie.atari_games import ATARI55, TABLE_NAMES, canonical_game, table_k1
from reverie.errors import ReverieError
from reverie.report.rundirs import Run, variant_label

METRICS = ("gamer_median", "gamer_mean", "record_mean", "clipped_record_mean")
BASELINES = ("dreamerv2", "rainbow", "iqn")  # Table K1 algorithm columns
BASELINE_LABELS = {"dreamerv2": "DreamerV2", "rainbow": "Rainbow", "iqn": "IQN"}
# Table 1 of the paper as printed (two decimals), for comparison and tests.
PAPER_TABLE1 = {
    "dreamerv2": {"gamer_median": 2.15, "gamer_mean": 42.26, "record_mean": 0.44, "clipped_record_mean": 0.28},
    "iqn": {"gamer_median": 1.29, "gamer_mean": 11.27, "record_mean": 0.21, "clipped_record_mean": 0.21},
    "rainbow": {"gamer_median": 1.47, "gamer_mean": 9.95, "record_mean": 0.17, "clipped_record_mean": 0.17},
}
# Task suites that are not Atari: listed in reports but never aggregated.
NON_ATARI_PREFIXES = ("dmc_", "gym_")

_TABLE = table_k1()


def normalize(game: str, score: float, by: str = "gamer", clip: bool = False) -> float:
    """Normalised score of one game: ``(score − random) / (by − random)``, ``by`` in gamer|record.

    ``game`` is a Table K1 name, ROM id or task name. ``clip`` caps the result at 1 (the
    paper's clipped record score); there is no lower clip."""
    if by not in ("gamer", "record"):
        raise ValueError(f"by must be 'gamer' or 'record', got {by!r}")
    row = _TABLE[canonical_game(game)]
    value = (float(score) - row["random"]) / (row[by] - row["random"])
    return min(value, 1.0) if clip else value


def aggregate(scores: dict[str, float]) -> dict:
    """The four aggregates of Table 1 over ``{game: score}`` (one score per game, e.g. a seed
    mean), plus ``games``: how many were used. Warns when that is not the paper's 55."""
    games = _canonical_scores(scores)
    if not games:
        raise ReverieError("no Atari game among the scores; the aggregates need at least one of the 55 games")
    if len(games) != len(ATARI55):
        missing = [TABLE_NAMES[g] for g in ATARI55 if g not in games]
        warnings.warn(f"aggregates over {len(games)} of the paper's 55 games (missing: {_short(missing)}); "
                      "not comparable to Table 1", stacklevel=2)
    gamer = np.array([normalize(g, s, "gamer") for g, s in games.items()])
    record = np.array([normalize(g, s, "record") for g, s in games.items()])
    return {
        "gamer_median": float(np.median(gamer)),
        "gamer_mean": float(gamer.mean()),
        "record_mean": float(record.mean()),
        "clipped_record_mean": float(np.minimum(record, 1.0).mean()),
        "games": len(games),
    }


def aggregate_seeds(finals: dict[str, dict]) -> tuple[dict, str | None]:
    """Aggregates of ``{game: {seed: score}}`` and a note on how seeds were combined.

    The paper (Table K1 caption) aggregates *before* averaging over seeds: when every game has
    the same seeds, each seed's 55 scores are aggregated and the aggregates averaged (this
    matters for the median and the clip). With unequal seed sets that is undefined, so the
    per-game seed means are aggregated instead, and the note says so."""
    seed_sets = {frozenset(seeds) for seeds in finals.values()}
    means = {game: float(np.mean(list(seeds.values()))) for game, seeds in finals.items()}
    if len(seed_sets) == 1 and len(next(iter(seed_sets))) > 1:
        per_seed = [aggregate({g: finals[g][seed] for g in finals}) for seed in sorted(next(iter(seed_sets)))]
        result = {m: float(np.mean([a[m] for a in per_seed])) for m in METRICS}
        return {**result, "games": per_seed[0]["games"], "seeds": len(per_seed)}, None
    result = aggregate(means)
    if len(seed_sets) > 1:
        return {**result, "seeds": None}, "games have different seeds; aggregated the per-game seed means"
    return {**result, "seeds": 1}, None


def baseline_scores(column: str) -> dict[str, float]:
    """``{rom id: final score}`` of a Table K1 algorithm column: dreamerv2, rainbow or iqn."""
    if column not in BASELINES:
        raise ReverieError(f"unknown baseline {column!r}; choose one of {', '.join(BASELINES)}")
    return {rom: row[column] for rom, row in _TABLE.items()}


def read_scores_csv(path: str | Path) -> tuple[dict[str, float], list[str]]:
    """``{game: score}`` from a CSV with columns ``game`` and ``score`` (others are ignored, so
    ``reverie scores --format csv`` output reads back). Rows of non-Atari tasks (dmc_, gym_)
    are skipped with a note; an unknown game name is an error listing the closest matches."""
    path = Path(path)
    reader = _csv_with(path, ("game", "score"))
    scores, notes = {}, []
    rows = list(reader)
    variants = sorted({row["variant"] for row in rows}) if "variant" in reader.fieldnames else []
    if len(variants) > 1:
        raise ReverieError(f"{path}: holds {len(variants)} variants ({', '.join(variants)}); "
                           "keep the rows of one variant")
    for number, row in enumerate(rows, 2):
        name = (row["game"] or "").strip()
        if name.startswith(NON_ATARI_PREFIXES):
            notes.append(f"{name}: not an Atari game; excluded from the aggregates")
            continue
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            raise ReverieError(f"{path}:{number}: score {row['score']!r} of {name!r} is not a number") from None
        scores[name] = score
    _canonical_scores(scores)  # fail early on unknown names and duplicates
    return scores, notes


def _csv_with(path: Path, columns: tuple[str, str]) -> csv.DictReader:
    """A CSV file's rows, refused in one line when the file or one of ``columns`` is missing."""
    if not path.is_file():
        raise ReverieError(f"{path}: no such file")
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
        raise ReverieError(f"{path}: needs a header with columns {columns[0]!r} and {columns[1]!r}, "
                           f"got {reader.fieldnames}")
    return reader


def _canonical_scores(scores: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, score in scores.items():
        rom = canonical_game(name)
        if rom in out:
            raise ReverieError(f"game {TABLE_NAMES[rom]} given twice; give one score per game (the seed mean)")
        out[rom] = float(score)
    return out


def _short(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


# ---------------------------------------------------------------------------------------------
# Reports: the per-game table and the aggregates that `reverie scores` prints.


@dataclass
class GameRow:
    """One line of the per-game table. ``game`` is the ROM id for one of the 55, else None."""

    task: str
    game: str | None
    score: float
    seeds: int = 1
    source: str = ""
    std: float | None = None  # sample std (ddof 1) of the seeds' final scores; None for one seed

    @property
    def name(self) -> str:
        return TABLE_NAMES[self.game] if self.game else self.task

    def normalized(self, by: str) -> float | None:
        return normalize(self.game, self.score, by) if self.game else None


@dataclass
class Report:
    """What ``reverie scores`` prints: per-game rows, our aggregates, the baselines' aggregates
    to compare with (paper Table 1 on all 55 games, else Table K1 columns on the same games)."""

    rows: list[GameRow]
    aggregates: dict | None
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_label: str = ""
    notes: list[str] = field(default_factory=list)


def report_from_scores(scores: dict[str, float], source: str = "", notes: list[str] | None = None) -> Report:
    """A report of one score per game (a CSV or a Table K1 column)."""
    games = _canonical_scores(scores)
    rows = [GameRow(f"atari_{rom}", rom, score, 1, source) for rom, score in games.items()]
    return _finish(rows, {rom: {0: s} for rom, s in games.items()}, list(notes or []))


def report_from_runs(logdirs: list[str], last: int = 10) -> Report:
    """The report of the runs under ``logdirs``, which must be of one variant (a study of
    several preset variants goes through ``reports_from_runs``)."""
    reports = reports_from_runs(logdirs, last)
    if len(reports) > 1:
        raise ReverieError(f"the runs under {', '.join(map(str, logdirs))} are {len(reports)} variants "
                           f"({', '.join(map(variant_label, reports))}); pass one variant's folder (ROOT/<variant>)")
    return next(iter(reports.values()))


def reports_from_runs(logdirs: list[str], last: int = 10) -> dict[str, Report]:
    """``{variant: report}`` of the runs under ``logdirs`` (``rundirs.load_runs`` names the
    variants: a sweep's preset folders). Per variant: final score per seed
    (``rundirs.final_score``), mean over the seeds of each task, aggregates over the Atari
    tasks among the 55."""
    from reverie.report.rundirs import load_runs

    return reports_of_runs(load_runs(logdirs), ", ".join(map(str, logdirs)), last)


def reports_of_runs(runs: list[Run], where: str, last: int = 10) -> dict[str, Report]:
    """``reports_from_runs`` of runs already loaded (``rundirs.load_runs``; a caller may leave
    some out, as a study's recorder leaves out the unfinished); ``where`` names them in errors."""
    from reverie.report.rundirs import group_variants

    reports, empty = {}, []
    for variant, groups in group_variants(runs).items():
        report = _report_of_groups(groups, last)
        if report is None:
            empty.append(variant_label(variant))
        else:
            reports[variant] = report
    if not reports:
        raise ReverieError(f"no run under {where} has a finished episode yet")
    for report in reports.values():
        report.notes += [f"variant {name}: no run has a finished episode yet; left out" for name in empty]
    return reports


def _report_of_groups(groups: dict[str, dict], last: int) -> Report | None:
    from reverie.report.rundirs import final_score

    rows, finals, notes = [], {}, []
    for task, seeds in groups.items():
        per_seed, sources = {}, set()
        for seed, run in seeds.items():
            notes.extend(run.notes)
            result = final_score(run, last)
            if result is None:
                notes.append(f"{run.path}: no finished episode yet; left out")
                continue
            per_seed[seed], source, used = result
            sources.add(source)
            if used < last:
                notes.append(f"{run.path}: only {used} episodes for the final score (--last {last})")
        if not per_seed:
            continue
        game = _atari_game(task, notes)
        values = list(per_seed.values())
        rows.append(GameRow(task, game, float(np.mean(values)), len(values), "; ".join(sorted(sources)),
                            float(np.std(values, ddof=1)) if len(values) > 1 else None))
        if game:
            finals[game] = per_seed
    return _finish(rows, finals, notes) if rows else None


def _atari_game(task: str, notes: list[str]) -> str | None:
    if not task.startswith("atari_"):
        notes.append(f"{task}: not an Atari task; listed but excluded from the aggregates")
        return None
    try:
        return canonical_game(task)
    except ReverieError:
        notes.append(f"{task}: not one of the paper's 55 games; listed but excluded from the aggregates")
        return None


def _finish(rows: list[GameRow], finals: dict[str, dict], notes: list[str]) -> Report:
    """Aggregate, attach the reference values, and turn warnings into notes for the printout."""
    report = Report(rows, None, notes=notes)
    if not finals:
        report.notes.append("no Atari game of the paper's 55 among the runs: no aggregates")
        return report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report.aggregates, note = aggregate_seeds(finals)
    report.notes += [str(w.message) for w in caught] + ([note] if note else [])
    if report.aggregates["games"] == len(ATARI55):
        report.reference, report.reference_label = PAPER_TABLE1, "paper Table 1"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the subset warning was already noted once
            report.reference = {b: aggregate({g: _TABLE[g][b] for g in finals}) for b in BASELINES}
        report.reference_label = f"Table K1 on the same {report.aggregates['games']} games"
    return report


# ---------------------------------------------------------------------------------------------
# Output formats.

_COLUMNS = ("game", "task", "seeds", "score", "gamer_norm", "record_norm", "dreamerv2", "rainbow", "iqn", "source")


def _row_values(row: GameRow) -> dict:
    paper = _TABLE.get(row.game or "", {})
    return {"game": row.name, "task": row.task, "seeds": row.seeds, "score": row.score,
            "gamer_norm": row.normalized("gamer"), "record_norm": row.normalized("record"),
            **{b: paper.get(b) for b in BASELINES}, "source": row.source}


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _aggregate_lines(report: Report) -> list[list[str]]:
    header = ["metric", "yours"] + [BASELINE_LABELS[b] for b in BASELINES]
    lines = [header]
    for metric in METRICS:
        lines.append([metric, _fmt(report.aggregates[metric])]
                     + [_fmt(report.reference[b][metric]) for b in BASELINES])
    return lines


def format_json(report: Report) -> str:
    return json.dumps({"games": [_row_values(r) for r in report.rows], "aggregates": report.aggregates,
                       "reference": report.reference, "reference_label": report.reference_label,
                       "notes": report.notes}, indent=2)


def format_csv(report: Report) -> str:
    """Per-game rows only (the aggregates are in the other formats); reads back with ``--csv``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in _row_values(row).items()})
    return out.getvalue().rstrip("\n")


def format_markdown(report: Report) -> str:
    def table(lines: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])] + [
            "| " + " | ".join(line) + " |" for line in lines[1:]]

    games = [list(_COLUMNS)] + [[_fmt(v) for v in _row_values(r).values()] for r in report.rows]
    text = table(games)
    if report.aggregates:
        text += ["", f"Aggregates over {report.aggregates['games']} games "
                 f"(baselines: {report.reference_label}):", ""] + table(_aggregate_lines(report))
    notes = [""] + [f"- {note}" for note in report.notes] if report.notes else []
    return "\n".join(text + notes)


# Beside published numbers of tasks that Table K1 does not cover (MinAtar, DMC, gym).


def read_reference_csv(path: str | Path) -> list[dict]:
    """Published scores to show beside a report: a CSV with columns ``label``, ``steps`` (0 when
    not a training length) and one column per task, named as the task (``minatar_breakout``) or
    without its family prefix (``breakout``); other columns are ignored. Returns one
    ``{"label", "steps", "scores": {column: value}}`` per row."""
    path = Path(path)
    reader = _csv_with(path, ("label", "steps"))
    rows = []
    for number, row in enumerate(reader, 2):
        try:
            values = {k: float(v) for k, v in row.items() if k not in ("label", "steps") and _is_number(v)}
            rows.append({"label": row["label"], "steps": int(float(row["steps"])), "scores": values})
        except (TypeError, ValueError):
            raise ReverieError(f"{path}:{number}: steps {row['steps']!r} is not a number") from None
    return rows


def _is_number(text: str | None) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def reference_score(reference: dict, task: str) -> float | None:
    """A reference row's score of ``task``: its column named as the task or as the task without
    its family prefix (``minatar_breakout`` → ``breakout``), else ``None``."""
    scores = reference["scores"]
    return scores.get(task, scores.get(task.split("_", 1)[-1]))


def format_reference_markdown(report: Report, reference: list[dict], label: str = "Reverie") -> str:
    """The report's tasks as columns: one row per reference source, then ours, the mean ± the
    sample std over seeds of the final scores (and how many seeds)."""
    tasks = [row.task for row in report.rows]
    lines = ["| source | steps | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for ref in reference:
        steps = f"{ref['steps'] / 1e6:g}M" if ref["steps"] else "–"
        lines.append(f"| {ref['label']} | {steps} | " + " | ".join(_fmt(reference_score(ref, t)) for t in tasks) + " |")
    cells = [seeds_cell(row.score, row.std, row.seeds, bold=True) for row in report.rows]
    sources = "; ".join(sorted({row.source for row in report.rows if row.source}))
    lines.append(f"| **{label}** ({sources}) | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_cell(score: float, std: float | None, seeds: int, bold: bool = False) -> str:
    """One task's cell of a reference table: ``score ± std (N seeds)``, the std only over 2+ seeds."""
    value = f"**{_fmt(score)}**" if bold else _fmt(score)
    return value + (f" ± {_fmt(std)}" if std is not None else "") + f" ({seeds} seed{'s' if seeds > 1 else ''})"


def print_table(report: Report, file=None) -> None:
    """Pretty console output with rich: the per-game table, then the aggregates."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    console.width = max(console.width, 104)  # pipes default to 80 columns, which truncates numbers
    # Task and source would make the table too wide for a terminal; the source goes in the caption.
    columns = [c for c in _COLUMNS if c not in ("task", "source")]
    sources = sorted({row.source for row in report.rows if row.source})
    games = Table(title="Final scores per game", caption=f"final score from: {'; '.join(sources)}" if sources else None)
    labels = {"gamer_norm": "gamer", "record_norm": "record", **BASELINE_LABELS}
    for column in columns:
        games.add_column(labels.get(column, column), justify="left" if column == "game" else "right",
                         no_wrap=True)
    for row in report.rows:
        values = _row_values(row)
        games.add_row(*(_fmt(values[c]) for c in columns))
    console.print(games)
    if report.aggregates:
        lines = _aggregate_lines(report)
        seeds = report.aggregates.get("seeds")
        agg = Table(title=f"Aggregates over {report.aggregates['games']} games"
                          + (f", seeds: {seeds}" if seeds else "") + f" (baselines: {report.reference_label})")
        for column in lines[0]:
            agg.add_column(column, justify="left" if column == "metric" else "right")
        for line in lines[1:]:
            agg.add_row(*line)
        console.print(agg)


# Several variants (a sweep's preset folders): one report each, then their aggregates side by side.


def _comparison_lines(reports: dict[str, Report]) -> list[list[str]]:
    header = ["metric"] + [variant_label(v) for v in reports]
    lines = [header, ["games"] + [_fmt(r.aggregates["games"] if r.aggregates else None) for r in reports.values()]]
    for metric in METRICS:
        lines.append([metric] + [_fmt(r.aggregates[metric] if r.aggregates else None) for r in reports.values()])
    return lines


def format_json_variants(reports: dict[str, Report]) -> str:
    comparison = {m: {v: (r.aggregates or {}).get(m) for v, r in reports.items()} for m in ("games", *METRICS)}
    return json.dumps({"variants": {v: json.loads(format_json(r)) for v, r in reports.items()},
                       "comparison": comparison}, indent=2)


def format_csv_variants(reports: dict[str, Report]) -> str:
    """Per-game rows with a leading ``variant`` column (``--csv`` reads back one variant only)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=("variant", *_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for variant, report in reports.items():
        for row in report.rows:
            writer.writerow({"variant": variant_label(variant),
                             **{k: ("" if v is None else v) for k, v in _row_values(row).items()}})
    return out.getvalue().rstrip("\n")


def format_markdown_variants(reports: dict[str, Report]) -> str:
    parts = [f"## Variant {variant_label(v)}\n\n{format_markdown(r)}" for v, r in reports.items()]
    lines = _comparison_lines(reports)
    table = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    table += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    return "\n\n".join(parts + ["## Comparison of the variants\n\n" + "\n".join(table)])


def print_table_variants(reports: dict[str, Report], file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    for variant, report in reports.items():
        print(f"\nVariant {variant_label(variant)}", file=file or sys.stdout)
        print_table(report, file=file)
    lines = _comparison_lines(reports)
    table = Table(title="Aggregates of the variants side by side")
    for column in lines[0]:
        table.add_column(column, justify="left" if column == "metric" else "right", no_wrap=True)
    for line in lines[1:]:
        table.add_row(*line)
    console = Console(file=file or sys.stdout)
    console.width = max(console.width, 104)
    console.print(table)


def cli_scores(args: argparse.Namespace) -> int:
    """``reverie scores``: exactly one of LOGDIR..., ``--csv FILE`` or ``--baseline NAME``."""
    given = [bool(args.logdirs), bool(args.csv), bool(args.baseline)]
    if sum(given) != 1:
        raise ReverieError("give exactly one of: run directories (LOGDIR...), --csv FILE, or --baseline NAME")
    if getattr(args, "reference", None):
        return _print_references(args)
    if args.baseline:
        report = report_from_scores(baseline_scores(args.baseline), f"Table K1 {args.baseline}")
    elif args.csv:
        scores, notes = read_scores_csv(args.csv)
        report = report_from_scores(scores, str(args.csv), notes)
    else:
        reports = reports_from_runs(args.logdirs, args.last)
        if len(reports) > 1:
            return _print_variants(reports, args.format)
        report = next(iter(reports.values()))
    if args.format == "table":
        print_table(report)
    else:
        print({"json": format_json, "markdown": format_markdown, "csv": format_csv}[args.format](report))
    for note in report.notes:
        print(f"reverie: note: {note}", file=sys.stderr)
    return 0


def _print_references(args: argparse.Namespace) -> int:
    """``--reference CSV``: per variant of the runs, their tasks beside the published rows."""
    if not args.logdirs:
        raise ReverieError("--reference compares run directories with published scores: give LOGDIR...")
    reference = read_reference_csv(args.reference)
    reports = reports_from_runs(args.logdirs, args.last)
    for variant, report in reports.items():
        if len(reports) > 1:
            print(f"\n{variant_label(variant)}\n")
        print(format_reference_markdown(report, reference))
        for note in report.notes:
            print(f"reverie: note: {note}", file=sys.stderr)
    return 0


def _print_variants(reports: dict[str, Report], fmt: str) -> int:
    if fmt == "table":
        print_table_variants(reports)
    else:
        print({"json": format_json_variants, "markdown": format_markdown_variants,
               "csv": format_csv_variants}[fmt](reports))
    for variant, report in reports.items():
        for note in report.notes:
            print(f"reverie: note: {variant_label(variant)}: {note}", file=sys.stderr)
    return 0
