"""`reverie train`'s arguments into a config (reverie.cli): the preset a task trains with when
no --preset is given (one rule, ``reverie.config.default_preset``, also the env benchmark's),
a new run's config and logdir, and the commands dispatched to another module's function."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from reverie.cli import DISPATCH, build_parser, dispatch, resolve, resolve_train_config
from reverie.config import SUITE_PRESETS, default_preset, load_config, preset_names
from reverie.envs.registry import SUITES
from reverie.envs.speed import task_config

SUITE_TASKS = {"atari": "atari_pong", "dmc": "dmc_walker_walk", "gym": "gym_CartPole-v1",
               "minatar": "minatar_breakout"}


def test_each_suite_trains_with_its_own_preset():
    assert set(SUITE_PRESETS) == set(SUITES) and set(SUITE_PRESETS) <= set(preset_names())
    assert [default_preset(t) for t in ("atari_pong", "dmc_walker_walk", "gym_CartPole-v1", "minatar_breakout")] \
        == ["atari", "dmc", "gym", "minatar"]
    assert default_preset("my_task") == "atari"  # a registered name outside the suites


@pytest.mark.parametrize("suite", sorted(SUITE_TASKS))
def test_train_and_the_env_benchmark_take_a_suites_preset_through_the_one_rule(suite, tmp_path):
    task = SUITE_TASKS[suite]
    expected = load_config(suite, [f"task={task}", "seed=0"]).to_dict()
    args = build_parser().parse_args(["train", "--task", task, "--seed", "0", "--logdir", str(tmp_path)])
    trained = resolve_train_config(args)[0].to_dict()
    assert default_preset(task) == suite
    assert {**trained, "logdir": expected["logdir"]} == expected
    assert task_config(task).to_dict() == expected


def test_each_dispatched_command_names_a_function_of_its_module():
    commands = build_parser()._subparsers._group_actions[0].choices  # name -> its ArgumentParser
    assert {name for name, p in commands.items() if p.get_default("func") is dispatch} == set(DISPATCH)
    for command, target in DISPATCH.items():
        assert callable(resolve(target)), command


def test_parsing_imports_no_dispatched_module():
    modules = sorted({target.split(":")[0] for target in DISPATCH})
    code = ("import sys; from reverie.cli import build_parser; build_parser().parse_args(['eval', '--logdir', 'x']); "
            f"print([m for m in {modules!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_new_run_resolves_task_seed_steps_and_logdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["train", "--task", "dmc_walker_walk", "--seed", "4", "--steps", "5e3",
                                      "--set", "replay.batch=8"])
    config, logdir = resolve_train_config(args)
    assert logdir == Path("runs/dmc_walker_walk/4") and config.logdir == str(logdir)
    assert (config.task, config.seed, config.run.steps, config.replay.batch) == ("dmc_walker_walk", 4, 5000, 8)
    assert config.env.action_repeat == 2  # the dmc preset (atari's is 4)


def test_resuming_with_a_preset_that_changed_since_warns_naming_the_settings(tmp_path):
    """A run saved under the `minatar` preset of before 2026-12-06 (windows inside episodes):
    resumed with `--preset minatar` it would take the preset's new replay rule, and one warning
    says so; without --preset, or with the rule set again on the command line, it keeps its own."""
    load_config("minatar", ["seed=0", "replay.cross_episodes=false"]).save(tmp_path / "config.yaml")

    def resume(*extra: str):
        args = build_parser().parse_args(["train", "--logdir", str(tmp_path), "--steps", "300000", *extra])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = resolve_train_config(args)[0]
        return config.replay.cross_episodes, [str(w.message) for w in caught]

    crosses, messages = resume("--preset", "minatar")
    assert crosses and len(messages) == 1 and "replay.cross_episodes: False → True" in messages[0]
    assert "run.steps" not in messages[0] and "logdir" not in messages[0]
    assert resume() == (False, [])
    assert resume("--preset", "minatar", "--set", "replay.cross_episodes=false") == (False, [])
    crosses, messages = resume("--preset", "minatar", "--set", "run.eval_every=1000")  # asked for: not named
    assert crosses and len(messages) == 1 and "changes 1 key of" in messages[0]
