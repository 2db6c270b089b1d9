"""The loop's schedules (reverie.run.when) and counters (LoopState), by hand."""

from __future__ import annotations

import json

from reverie.config import load_config
from reverie.run.train import LoopState, Mean, Schedule
from reverie.run.when import Before, Every, Once, Ratio


def due(predicate, steps=range(1, 10)) -> list[int]:
    return [step for step in steps if predicate(step)]


def test_every_is_true_on_multiples_and_never_when_zero():
    assert due(Every(3)) == [3, 6, 9]
    assert due(Every(1)) == list(range(1, 10))
    assert due(Every(0)) == []


def test_before_and_ratio():
    assert due(Before(4), range(0, 8)) == [0, 1, 2, 3]
    assert [Ratio(every=4, updates=2)(step) for step in range(1, 10)] == [0, 0, 0, 2, 0, 0, 0, 2, 0]


def test_once_is_true_on_the_first_call_only_and_keeps_its_bit():
    once = Once()
    assert [once(), once(), once()] == [True, False, False] and once.done
    assert Once(done=True)() is False  # a resumed run that had pretrained does not pretrain again


def test_schedule_reads_config_run():
    run = load_config("debug", ["run.prefill=40", "run.train_every=5", "run.train_steps=3", "run.log_every=20",
                                "run.video_every=0", "run.eval_every=0", "run.checkpoint_every=30"]).run
    when = Schedule.of(run)
    assert due(when.explore, range(38, 43)) == [38, 39]
    assert [when.train(step) for step in (5, 6, 10)] == [3, 0, 3]
    assert due(when.log, range(1, 61)) == due(when.video, range(1, 61)) == [20, 40, 60]  # video_every=0: every log
    assert due(when.eval, range(1, 61)) == []
    assert due(when.save, range(1, 61)) == [30, 60]


def test_loop_state_means_and_round_trip_through_json():
    loop = LoopState(step=12, episodes=2, last_return=9.0)
    loop.add({"model_loss": 1.0, "kl": 0.5})
    loop.add({"model_loss": 2.0, "kl": 1.5})
    assert loop.train_metrics["model_loss"] == Mean(total=3.0, count=2)
    loop.pretrain()
    state = json.loads(json.dumps(loop.state_dict()))  # what state.json holds
    again = LoopState()
    again.load_state_dict(state)
    assert (again.step, again.episodes, again.last_return, again.pretrain.done) == (12, 2, 9.0, True)
    assert again.means() == loop.means() == {"train/model_loss": 1.5, "train/kl": 1.0}
    assert again.means() == {}  # a new mean starts after each log
