"""`reverie train`'s arguments into a config (reverie.cli): the preset a task trains with when
no --preset is given, and a new run's config and logdir."""

from __future__ import annotations

from pathlib import Path

from reverie.cli import SUITE_PRESETS, build_parser, default_preset, resolve_train_config
from reverie.config import preset_names
from reverie.envs.registry import SUITES


def test_each_suite_trains_with_its_own_preset():
    assert set(SUITE_PRESETS) == set(SUITES) and set(SUITE_PRESETS) <= set(preset_names())
    assert [default_preset(t) for t in ("atari_pong", "dmc_walker_walk", "gym_CartPole-v1", "minatar_breakout")] \
        == ["atari", "dmc", "gym", "minatar"]
    assert default_preset("my_task") == "atari"  # a registered name outside the suites


def test_a_new_run_resolves_task_seed_steps_and_logdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["train", "--task", "dmc_walker_walk", "--seed", "4", "--steps", "5e3",
                                      "--set", "replay.batch=8"])
    config, logdir = resolve_train_config(args)
    assert logdir == Path("runs/dmc_walker_walk/4") and config.logdir == str(logdir)
    assert (config.task, config.seed, config.run.steps, config.replay.batch) == ("dmc_walker_walk", 4, 5000, 8)
    assert config.env.action_repeat == 2  # the dmc preset (atari's is 4)
