"""The plan of a study: its runs (task × seed × preset), parsed and validated from the
command line, written to ``ROOT/sweep.yaml`` before anything is scheduled."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from reverie.atari_games import ATARI55
from reverie.config import RUN_OWN_KEYS, load_config, load_config_file, setting_changes
from reverie.errors import ConfigError, ReverieError, TaskError
from reverie.utils import atomic_write_text

PLAN_FILE = "sweep.yaml"



@dataclass(frozen=True)
class RunSpec:
    """One run of the study. ``path`` is relative to the study root: ``<preset dir>/<task>/<seed>``."""

    task: str
    seed: int
    preset: str  # comma-composed presets of this variant, e.g. "atari,no_layer_norm"
    total_steps: int  # agent steps at the end of the run (run.steps, or --steps)
    action_repeat: int  # frames per agent step, to report frames

    @property
    def path(self) -> str:
        return f"{preset_dirname(self.preset)}/{self.task}/{self.seed}"

    @property
    def total_frames(self) -> int:
        return self.total_steps * self.action_repeat


@dataclass
class Plan:
    """What ``ROOT/sweep.yaml`` holds: the inputs of the study and the runs they expand to.

    Runs are ordered preset, then seed, then task, so that with fewer slots than runs one
    complete seed of every game finishes first (an early, complete Table 1)."""

    root: Path
    tasks: list[str]
    seeds: list[int]
    presets: list[str]
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE of every run
    steps: int | None = None  # --steps; None = each preset's run.steps
    runs: list[RunSpec] = field(default_factory=list)
    recorded: str | None = None  # --recorded: a record_study folder whose finished runs count as done

    def logdir(self, run: RunSpec) -> Path:
        return self.root / run.path

    def to_yaml(self) -> str:
        data = {"version": 1, "tasks": self.tasks, "seeds": self.seeds, "presets": self.presets,
                "overrides": self.overrides, "steps": self.steps, "recorded": self.recorded,
                "runs": [asdict(r) for r in self.runs]}
        return yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def read(cls, root: str | Path) -> Plan:
        path = Path(root) / PLAN_FILE
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ReverieError(f"{path}: cannot read the study's plan ({getattr(error, 'strerror', error)}); "
                               "is this the --logdir of a `reverie sweep`?") from error
        try:
            runs = [RunSpec(**run) for run in data.pop("runs")]
            data.pop("version", None)
            return cls(root=Path(root), runs=runs, **data)
        except (AttributeError, KeyError, TypeError) as error:
            raise ReverieError(f"{path}: not a plan written by `reverie sweep` ({error})") from error


def preset_dirname(preset: str) -> str:
    """Folder of a preset variant: ``atari,no_layer_norm`` → ``atari+no_layer_norm``."""
    return preset.replace(",", "+")


def task_groups() -> dict[str, list[str]]:
    """Names that stand for a whole suite in ``--tasks``: the paper's 55 Atari games, and
    MinAtar's five games (Young & Tian 2019)."""
    from reverie.envs.minatar import GAMES

    return {"atari55": [f"atari_{rom}" for rom in ATARI55], "minatar5": [f"minatar_{game}" for game in GAMES]}


def parse_tasks(spec: str | None) -> list[str]:
    """A group (``atari55``, ``minatar5``), a comma list (which may contain groups), or
    ``@file`` with one task per line (``#`` comments and blank lines ignored). Duplicates are
    dropped, order kept."""
    if not spec:
        raise ConfigError("--tasks is required: atari55, minatar5, a comma list such as atari_pong,atari_breakout, "
                          "or @file with one task per line")
    if spec.startswith("@"):
        try:
            text = Path(spec[1:]).read_text()
        except OSError as error:
            raise ConfigError(f"--tasks {spec}: cannot read {spec[1:]} ({error.strerror})") from error
        items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        items = [item.strip() for item in spec.split(",")]
    tasks: list[str] = []
    groups = task_groups()
    for item in filter(None, items):
        tasks += groups.get(item, [item])
    if not tasks:
        raise ConfigError(f"--tasks {spec}: no task names")
    return list(dict.fromkeys(tasks))


def check_tasks(tasks: list[str]) -> None:
    """Raise one ``TaskError`` naming every unknown task (with the registry's closest names)."""
    from reverie.envs.registry import resolve

    errors = []
    for task in tasks:
        try:
            resolve(task)
        except TaskError as error:
            errors.append(str(error))
    if errors:
        raise TaskError(f"{len(errors)} of {len(tasks)} tasks unknown, nothing scheduled:\n  " + "\n  ".join(errors))


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(item) for item in str(spec).split(",") if item.strip()]
    except ValueError as error:
        raise ConfigError(f"--seeds {spec!r}: not a comma list of integers, e.g. 0,1,2") from error
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {spec!r}: give distinct non-negative integers, e.g. 0,1,2")
    return seeds


def parse_presets(spec: str) -> list[str]:
    """``;`` separates variants, ``,`` composes presets within one: ``atari;atari,no_layer_norm``."""
    variants = [",".join(p.strip() for p in v.split(",") if p.strip()) for v in spec.split(";")]
    variants = [v for v in variants if v]
    if not variants or len(set(variants)) != len(variants):
        raise ConfigError(f"--preset {spec!r}: give distinct variants separated by ';'")
    return variants


def make_plan(root: str | Path, tasks: str | None, seeds: str, presets: str,
              overrides: list[str] | None = None, steps: float | None = None,
              recorded: str | Path | None = None) -> Plan:
    """Parse and validate everything a sweep needs; raises before anything is scheduled."""
    overrides = list(overrides or [])
    if recorded is not None and not Path(recorded).is_dir():
        raise ConfigError(f"--recorded {recorded}: no such folder; give the results folder that "
                          "`python -m benchmarks.record_study` wrote the study's runs into")
    if any(item.split("=", 1)[0].strip() == "threads" for item in overrides):
        raise ConfigError("--set threads: a sweep's runs get --cpus-per-run threads (and OMP_NUM_THREADS); "
                          "drop --set threads and use --cpus-per-run")
    if steps is not None and (steps <= 0 or steps != int(steps)):
        raise ConfigError(f"--steps {steps}: give a positive whole number of agent steps")
    plan = Plan(Path(root).resolve(), parse_tasks(tasks), parse_seeds(seeds), parse_presets(presets),
                overrides, None if steps is None else int(steps),
                recorded=None if recorded is None else str(Path(recorded).resolve()))
    check_tasks(plan.tasks)
    for preset in plan.presets:
        config = load_config(preset, overrides)  # ConfigError names a bad preset or key
        total = plan.steps or config.run.steps
        plan.runs += [RunSpec(task, seed, preset, total, config.env.action_repeat)
                      for seed in plan.seeds for task in plan.tasks]
    check_started_runs(plan)
    return plan


def config_changes(plan: Plan, run: RunSpec) -> list[str]:
    """``key: saved → now`` for each key (but ``RUN_OWN_KEYS``) whose value in the run's saved
    ``config.yaml`` differs from the config the sweep's ``reverie train --preset`` would resume
    it with now; ``[]`` for a run not started."""
    saved = plan.logdir(run) / "config.yaml"
    if not saved.is_file():
        return []
    old = load_config_file(saved)
    new = load_config(run.preset, plan.overrides + [f"task={run.task}", f"seed={run.seed}"])
    return setting_changes(old, new, ignore=RUN_OWN_KEYS)


def check_started_runs(plan: Plan) -> None:
    """Refuse a study whose started runs were set up otherwise than the sweep would set them up
    now (the preset's file or a ``--set`` changed since): resumed with ``--preset``, such a run
    would switch settings mid-run, and the study would mix two configs under one name."""
    changed = {run.path: keys for run in plan.runs if (keys := config_changes(plan, run))}
    if changed:
        path, keys = next(iter(changed.items()))
        raise ConfigError(f"{len(changed)} of the started runs under {plan.root} were set up otherwise than this sweep "
                          f"would set them up now (e.g. {path}, {'; '.join(keys[:3])}): the preset or a --set "
                          "changed since they started. Resume each with its own config (reverie train --logdir "
                          "RUN), or start this study in a new --logdir")


def write_plan(plan: Plan) -> None:
    """Write ``sweep.yaml``. A study may grow (tasks, seeds, presets) between invocations, but
    its runs' settings may not change, or resumed runs would differ from finished ones."""
    path = plan.root / PLAN_FILE
    if path.exists():
        old = Plan.read(plan.root)
        changed = [name for name in ("overrides", "steps") if getattr(old, name) != getattr(plan, name)]
        if changed:
            raise ConfigError(f"{path} was planned with other {' and '.join(changed)} "
                              f"({', '.join(f'{n}={getattr(old, n)!r}' for n in changed)}); re-run with the "
                              "same --set/--steps to resume it, or use a new --logdir")
    atomic_write_text(path, plan.to_yaml())

