"""Command line: ``reverie config|tasks|train|eval|scores|plot|bench|sweep|demo``.

Each subcommand is one small function, or for a command whose whole work is one function of
another module an entry of ``DISPATCH``; heavy imports happen only when a command runs, so
that ``reverie --help`` is instant and needs no optional extra. The work itself lives in the
module named by the command (``reverie.run.train``, ``reverie.report.scores``, ...); what a command
parses (``reverie train``'s arguments into a config) is resolved here.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import signal
import sys
import warnings
from pathlib import Path

from reverie.config import (
    MODEL_KEYS,
    RUN_OWN_KEYS,
    Config,
    default_preset,
    load_config,
    load_config_file,
    parse_override,
    setting_changes,
)
from reverie.errors import ReverieError, describe_os_error
from reverie.runtime import Terminated, prepare_process


def cmd_config(args: argparse.Namespace) -> int:
    if args.explain:
        from reverie.config import explain

        print(explain(args.explain))
        return 0
    config = load_config(args.preset, args.set)
    if args.params:
        from reverie.tools.params import format_counts, parameter_counts

        prepare_process(config)  # it builds the task's env: dm-control's renderer, the ALE's logger
        print(format_counts(parameter_counts(config)))
        return 0
    print(config.to_json() if args.format == "json" else config.to_yaml().rstrip())
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from reverie.envs.registry import format_tasks

    print(format_tasks(suite=args.suite))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    config, logdir = resolve_train_config(args)
    prepare_process(config)  # the config's thread wait policy, before torch loads
    _enable_faulthandler()
    from reverie.run.train import train

    summary = train(config, logdir)
    print(f"\nrun finished: {summary['step']:,} agent steps ({summary['frames']:,} frames)")
    print(f"  metrics:     {logdir / 'metrics.jsonl'}   (tensorboard --logdir {logdir})")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  videos:      {logdir / 'videos'}")
    return 0


def _enable_faulthandler() -> None:
    """A crash in native code (MuJoCo's renderer, torch, a library's heap) prints every thread's
    Python stack to stderr, which `reverie sweep` sends to the run's train.log, before the process
    dies; without it a run killed by SIGSEGV leaves no trace. Left alone when already on (pytest,
    ``PYTHONFAULTHANDLER``)."""
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable(all_threads=True)
        except (AttributeError, ValueError):  # a stderr without a file descriptor (io.UnsupportedOperation)
            pass


def resolve_train_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The config of ``reverie train``: from the logdir when resuming (``train`` refuses model
    changes: ``reverie.run.train.check_resume``), else from presets + overrides.
    ``--task/--seed/--steps`` are overrides of their keys."""
    overrides = list(args.set or []) + ([f"run.steps={int(args.steps)}"] if args.steps is not None else [])
    logdir = Path(args.logdir) if args.logdir else None
    if logdir is not None and (logdir / "config.yaml").exists():
        return _resumed_config(args, logdir, overrides), logdir
    overrides += [f"task={args.task}"] if args.task else []
    overrides += [f"seed={args.seed}"] if args.seed is not None else []
    config = load_config(args.preset or default_preset(args.task or "atari_pong"), overrides)
    logdir = logdir or Path("runs") / config.task / str(config.seed)
    config.logdir = str(logdir)
    return config, logdir


def _resumed_config(args: argparse.Namespace, logdir: Path, overrides: list[str]) -> Config:
    """The saved config with this command's overrides (``train`` refuses any that change the
    model, the data or the seed before it touches the run). With ``--preset``, the preset as it
    is now: one warning names the other settings it changes from the run's (a preset edited
    since the run started would otherwise switch them mid-run unnoticed)."""
    old = load_config_file(logdir / "config.yaml")
    overrides += [f"task={args.task or old.task}", f"seed={old.seed if args.seed is None else args.seed}"]
    new = load_config(args.preset, overrides) if args.preset else load_config(None, overrides, base=old.to_dict())
    new.logdir = str(logdir)
    asked = tuple(parse_override(item)[0] for item in overrides)  # this command's own --set: meant
    changed = setting_changes(old, new, ignore=(*MODEL_KEYS, *RUN_OWN_KEYS, *asked)) if args.preset else []
    if changed:
        warnings.warn(f"{logdir}: resuming with --preset {args.preset} as it is now changes {len(changed)} "
                      f"key{'s' * (len(changed) > 1)} of the run's config.yaml ({'; '.join(changed[:3])}); drop "
                      "--preset to resume with the run's own", stacklevel=2)
    return new


# Commands whose whole work is one function of another module, as ``module:function``; the
# module is imported only when its command runs (``dispatch``), never at parse time.
DISPATCH = {
    "eval": "reverie.run.evaluate:cli_eval",
    "scores": "reverie.report.scores:cli_scores",
    "plot": "reverie.report.plot:cli_plot",
    "sweep": "reverie.sweep:cli_sweep",
    "demo": "reverie.run.demo:cli_demo",
}


def dispatch(args: argparse.Namespace) -> int:
    """Run ``args.command`` through its ``DISPATCH`` entry."""
    return resolve(DISPATCH[args.command])(args)


def resolve(target: str):
    """The function named by ``"module:function"``, its module imported now."""
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def cmd_bench(args: argparse.Namespace) -> int:
    prepare_process(load_config(args.preset, list(args.set)))  # before torch loads (bench_config checks it all)
    from reverie.tools.timing import cli_bench

    return cli_bench(args)


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def count(minimum: int):
    """An argparse type: a whole number >= ``minimum``, written as 50000 or 5e4."""

    def parse(text: str) -> int:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not number.is_integer() or number < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= {minimum}")
        return int(number)

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="reverie",
        description="DreamerV2 (Hafner et al., ICLR 2021) in PyTorch. "
        "Run `reverie COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_config(sub)
    _add_tasks(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_scores(sub)
    _add_plot(sub)
    _add_bench(sub)
    _add_sweep(sub)
    _add_demo(sub)
    return parser


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="print the resolved config of presets and overrides")
    _add_config_args(p)
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    p.add_argument("--params", action="store_true", help="print parameter counts per module instead")
    p.add_argument("--explain", metavar="KEY", help="print what a key means (the paper's symbol), its rule "
                   "and its value in each preset, e.g. --explain behavior.discount")
    p.set_defaults(func=cmd_config)


def _add_tasks(sub) -> None:
    p = sub.add_parser("tasks", help="list the available tasks (the paper's 55 Atari games marked)")
    p.add_argument("--suite", choices=["atari", "dmc", "gym", "minatar", "all"], default="all")
    p.set_defaults(func=cmd_tasks)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train an agent; on an existing logdir, resume it")
    p.add_argument("--task", help="task name, e.g. atari_pong, dmc_walker_walk, gym_CartPole-v1")
    _add_config_args(p, preset=None)
    p.add_argument("--logdir", help="run directory (default runs/<task>/<seed>)")
    p.add_argument("--steps", type=count(1), help="agent steps to train in total (run.steps), e.g. 5e4")
    p.add_argument("--seed", type=count(0), help="random seed (seed)")
    p.set_defaults(func=cmd_train)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate the newest complete checkpoint of a run")
    p.add_argument("--logdir", required=True)
    p.add_argument("--episodes", type=count(1), default=None, help="episodes (default run.eval_episodes)")
    p.add_argument("--video", action="store_true", help="save a video of each episode")
    p.add_argument("--policy", choices=("mode", "sample", "both"), default=None,
                   help="the actor's mode (the paper's), its samples on the same episode seeds, or both "
                        "(default: what the run's evaluations play: both with run.eval_sample, else mode)")
    p.set_defaults(func=dispatch)


def _add_scores(sub) -> None:
    p = sub.add_parser("scores", help="the paper's four aggregate Atari scores from runs or a CSV")
    p.add_argument("logdirs", nargs="*", help="run directories (searched recursively)")
    p.add_argument("--csv", help="a game,score CSV instead of run directories")
    p.add_argument("--baseline", choices=["dreamerv2", "rainbow", "iqn"], help="aggregate a Table K1 column")
    p.add_argument("--format", choices=["table", "json", "markdown", "csv"], default="table")
    p.add_argument("--last", type=count(1), default=10, help="final score = mean of the last N eval episodes")
    p.add_argument("--reference", metavar="CSV", help="with run directories: a markdown table of the runs' tasks "
                   "beside published scores (columns label, steps, one per task; e.g. reverie/data/minatar_reference.csv)")
    p.set_defaults(func=dispatch)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="learning curves, world-model losses, per-game bars")
    p.add_argument("logdirs", nargs="*", help="run directories (searched recursively)")
    p.add_argument("--out", required=True, help="output image, .png or .svg")
    p.add_argument("--kind", choices=["curves", "world_model", "bars"], default="curves")
    p.add_argument("--metric", default="eval/return", help="y axis for curves: eval/return or episode/return")
    p.add_argument("--baseline", choices=["rainbow", "iqn", "dreamerv2"], default="rainbow",
                   help="for --kind bars: the column to compare against")
    p.add_argument("--csv", help="for --kind bars: a game,score CSV instead of run directories")
    p.add_argument("--last", type=count(1), default=10, help="for --kind bars: final score = mean of the last N evals")
    p.set_defaults(func=dispatch)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time updates and acting; FLOPs against the measured peak")
    _add_config_args(p, preset="atari")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--updates", type=count(1), default=5, help="timed repeats after warm-up")
    p.add_argument("--env", dest="env_task", help="task to time: its spaces shape the networks, its env step "
                   "enters the projection (default: the config's task)")
    p.add_argument("--env-steps", type=count(1), default=2000, help="random-policy agent steps timed for the env step")
    p.add_argument("--envs", type=count(1), default=1, help="environments acting together: the policy is timed as "
                   "one call for N observations, as the training loop makes it with run.envs=N")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run games × seeds × presets on Ray, resumably")
    p.add_argument("--tasks", help="atari55, minatar5, a comma list, or @file with one task per line")
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument("--preset", default="atari", help="preset(s) of every run; ';' separates variants")
    p.add_argument("--logdir", help="study root: ROOT/<preset>/<task>/<seed>/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=count(1), help="agent steps per run")
    p.add_argument("--address", help="Ray address (auto or ray://host:port); default: a local instance")
    p.add_argument("--local", action="store_true", help="start Ray on this machine (the default)")
    p.add_argument("--gpus-per-run", type=float, default=None)
    p.add_argument("--cpus-per-run", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--retries", type=int, default=2, help="attempts after a failure, per run")
    p.add_argument("--recorded", metavar="DIR", help="results folder of `python -m benchmarks.record_study`: runs "
                   "recorded there as finished are not run again where ROOT lacks them (a study over sittings)")
    p.add_argument("--status", metavar="ROOT", help="print the state of a study and exit")
    p.set_defaults(func=dispatch)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="a short real training run that ends in minutes on a CPU")
    p.add_argument("--logdir", default="runs/demo")
    p.set_defaults(func=dispatch)


def _add_config_args(p: argparse.ArgumentParser, preset: str | None = "atari") -> None:
    p.add_argument("--preset", default=preset, help="presets composed left to right, e.g. atari,no_layer_norm")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set replay.batch=16 (repeatable)")


def main(argv: list[str] | None = None) -> int:
    prepare_process()  # before any command imports torch
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.func(args)
    except ReverieError as error:
        print(f"reverie: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f"reverie: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error (before OSError, its base)
        sys.stderr.close()
        return 0
    except OSError as error:  # a file the command reads or writes: name it, no traceback
        print(f"reverie: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except Terminated as stop:  # SIGTERM during `reverie train` (a KeyboardInterrupt: before it)
        print(f"reverie: {stop}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("reverie: interrupted", file=sys.stderr)
        return 130


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (a skipped corrupt checkpoint, ...) as ``reverie: warning: ...``, one line each."""
    return f"reverie: warning: {_one_line(message)}\n"


if __name__ == "__main__":
    sys.exit(main())
