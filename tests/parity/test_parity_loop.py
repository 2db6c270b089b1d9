"""The training loop's start against the official ``api.train`` / ``train.py``: the official loop
makes one update to build its variables, ``pretrain`` updates, then trains whenever its
``common.Every(train_every)`` fires, which it does on its first call (the first policy step).
Reverie's ``run.pretrain`` counts the first two together (``atari_official``: 2), and its
``Trainer.updates_due`` asks ``Ratio`` at ``step − learn_start − 1``. The loop test
``tests/integration/test_loop_rules.py`` checks that the real ``train`` does this."""

from __future__ import annotations

from reverie.config import load_config
from reverie.run.train import Schedule
from tests.parity.official import common, official_config


def test_updates_fire_on_the_steps_of_the_official_every(table):
    config = load_config("atari,atari_official")
    run, prefill = config.run, 50_000
    every = common.Every(run.train_every)
    steps = range(prefill + 1, prefill + 2_000)  # the policy steps after a prefill ending at agent step 50,000
    official = [step for step in steps if every(step)]
    when = Schedule.of(run)
    mine = [step for step in steps if when.train(step - prefill - 1)]
    table.check("loop start, atari_official", "agent steps with an update after prefill (first 2,000)",
                mine, official, 0.0)


def test_atari_official_starts_with_the_official_update_count(table):
    official = official_config("atari")
    config = load_config("atari,atari_official")
    assert config.run.pretrain == official.pretrain + 1  # + the official variable-building update
    assert (config.run.train_every, config.run.prefill, config.run.train_steps) == (
        official.train_every, official.prefill, official.train_steps)
    replay = official.replay
    assert (config.replay.prioritize_ends, config.replay.ongoing, config.replay.minlen, config.replay.length) == (
        replay.prioritize_ends, replay.ongoing, replay.minlen, replay.maxlen)
    table.check("loop start, atari_official", "updates when prefill ends (official: build + pretrain)",
                [config.run.pretrain], [1 + official.pretrain], 0.0)
