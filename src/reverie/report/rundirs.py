"""Reading run directories written by ``reverie train`` (see docs/ARCHITECTURE.md, "Run directory").

A run is a folder holding ``config.yaml`` and/or ``metrics.jsonl``; ``find_runs`` finds them
recursively, ``load_run`` parses one, ``group_variants`` groups them by variant, task and
seed, and ``final_score`` turns one run into the number that ``reverie scores`` aggregates.

A *variant* is the folder a run sits in below the searched root, without the run's own
folder and its task folder: ``reverie sweep`` writes ``ROOT/<preset>/<task>/<seed>``, so
``reverie scores ROOT`` sees one variant per preset (``atari``, ``atari+no_layer_norm``);
``reverie train``'s default ``runs/<task>/<seed>`` searched from ``runs`` is one variant, ``""``.
Reading never raises on a run that is still being written: a truncated last line of a
JSONL file is skipped, because the trainer may be in the middle of appending it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from reverie.errors import ReverieError

RUN_MARKERS = ("config.yaml", "metrics.jsonl")
# Sub-folders of a run that never hold another run; skipping them keeps the search fast.
_SKIP_DIRS = {"replay", "checkpoints", "videos"}


@dataclass
class Run:
    """One run directory: its config, the rows of metrics.jsonl and eval.jsonl, and notes on
    anything unusual met while reading (printed by the CLI)."""

    path: Path
    task: str
    seed: int | None
    action_repeat: int | None
    metrics: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    variant: str = ""  # folder below the searched root (module docstring); "" for a plain layout

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(frames, values)`` of the metrics rows that hold ``key``, in file order.

        Rows without ``frames`` use ``step × env.action_repeat`` (the definition of frames)."""
        xs, ys = [], []
        for row in self.metrics:
            if key in row and row[key] is not None:
                xs.append(self._frames(row))
                ys.append(float(row[key]))
        return np.asarray(xs, float), np.asarray(ys, float)

    def _frames(self, row: dict) -> float:
        if "frames" in row:
            return float(row["frames"])
        return float(row.get("step", np.nan)) * (self.action_repeat or 1)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories at or below ``paths`` (folders holding config.yaml or metrics.jsonl), sorted.

    Raises ``ReverieError`` for a path that does not exist or a search that finds no run."""
    if not paths:
        raise ReverieError("no run directories given; pass one or more LOGDIRs")
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise ReverieError(f"{path}: no such file or directory")
        if not path.is_dir():
            raise ReverieError(f"{path}: not a directory; pass a run directory (or --csv for a CSV file)")
        found.update(_walk(path))
    if not found:
        raise ReverieError(f"no runs (folders with {' or '.join(RUN_MARKERS)}) under {', '.join(map(str, paths))}")
    return sorted(found)


def _walk(root: Path):
    if any((root / marker).is_file() for marker in RUN_MARKERS):
        yield root
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name not in _SKIP_DIRS and not child.name.startswith("."):
            yield from _walk(child)


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a JSONL file and notes. A truncated last line is skipped silently (a run being
    written); a malformed line elsewhere is skipped with a note naming file and line."""
    if not path.is_file():
        return [], []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows, notes = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number != len(lines):
                notes.append(f"{path}:{number}: skipped a malformed line")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, notes


def load_run(path: str | Path) -> Run:
    """Parse one run directory. Task and seed come from config.yaml (keys ``task``, ``seed``);
    without one, the default layout ``runs/<task>/<seed>`` is assumed and a note says so."""
    path = Path(path)
    config_file, notes = path / "config.yaml", []
    if config_file.is_file():
        try:
            config = yaml.safe_load(config_file.read_text()) or {}
        except yaml.YAMLError as error:
            raise ReverieError(f"{config_file}: not valid YAML ({error})") from error
        if not isinstance(config, dict) or not config.get("task"):
            raise ReverieError(f"{config_file}: has no 'task' key; is this a Reverie run directory?")
        task, seed = config["task"], config.get("seed")
        action_repeat = (config.get("env") or {}).get("action_repeat")
    else:
        task, seed, action_repeat = path.parent.name, path.name, None
        notes.append(f"{path}: no config.yaml; task and seed taken from the path <task>/<seed>")
    metrics, metric_notes = read_jsonl(path / "metrics.jsonl")
    evals, eval_notes = read_jsonl(path / "eval.jsonl")
    return Run(path, str(task), _as_int(seed), action_repeat, metrics, evals, notes + metric_notes + eval_notes)


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def load_runs(paths: list[str | Path]) -> list[Run]:
    """``load_run`` for every run found under ``paths``, each with its ``variant``: the folders
    between the common root of ``paths`` and the run, less the run's folder and a task folder."""
    runs = [load_run(path) for path in find_runs(paths)]
    # absolute(), not resolve(): a linked folder below a root stays below it.
    base = Path(os.path.commonpath([str(Path(p).absolute()) for p in paths]))
    for run in runs:
        parts = list(run.path.absolute().relative_to(base).parts)[:-1]  # less the run's own folder
        if parts and parts[-1] == run.task:
            parts.pop()
        run.variant = "/".join(parts)
    return runs


def group_variants(runs: list[Run]) -> dict[str, dict[str, dict[int | None, Run]]]:
    """``{variant: {task: {seed: run}}}`` (``group_runs`` within each variant), variants sorted."""
    variants: dict[str, list[Run]] = {}
    for run in runs:
        variants.setdefault(run.variant, []).append(run)
    return {name: group_runs(variants[name]) for name in sorted(variants)}


def variant_label(variant: str) -> str:
    """How a variant is printed: its folder, or ``(root)`` for runs directly below the root."""
    return variant or "(root)"


def group_runs(runs: list[Run]) -> dict[str, dict[int | None, Run]]:
    """``{task: {seed: run}}`` of the runs of one variant, tasks and seeds sorted. A second run
    with the same task and seed (a copied folder) is left out with a note on the first, so no
    seed counts twice; runs of several variants go through ``group_variants`` instead."""
    groups: dict[str, dict[int | None, Run]] = {}
    for run in runs:
        seeds = groups.setdefault(run.task, {})
        if run.seed in seeds:
            seeds[run.seed].notes.append(
                f"{run.path}: same task {run.task} and seed {run.seed} as {seeds[run.seed].path}; ignored")
            continue
        seeds[run.seed] = run
    return {task: dict(sorted(seeds.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
            for task, seeds in sorted(groups.items())}


# Where a final score comes from, in order of preference, as (description, reader).
FINAL_SOURCES = ("eval/return in metrics.jsonl", "return in eval.jsonl", "episode/return in metrics.jsonl")


def final_score(run: Run, last: int = 10) -> tuple[float, str, int] | None:
    """Final score of a run: the mean return over its last ``last`` evaluation episodes.

    Evaluation episodes come from metrics.jsonl ("eval/return", one line per episode), else
    from eval.jsonl (``reverie eval``, its mode policy), else training episodes ("episode/return")
    stand in.
    Returns ``(score, source, episodes used)``, or ``None`` when the run has no episode yet."""
    if last < 1:
        raise ReverieError(f"--last must be at least 1, got {last}")
    candidates = (
        [row["eval/return"] for row in run.metrics if row.get("eval/return") is not None],
        [row["return"] for row in run.evals if row.get("return") is not None and row.get("policy", "mode") == "mode"],
        [row["episode/return"] for row in run.metrics if row.get("episode/return") is not None],
    )
    for source, returns in zip(FINAL_SOURCES, candidates):
        if returns:
            used = [float(r) for r in returns[-last:]]
            return float(np.mean(used)), source, len(used)
    return None
