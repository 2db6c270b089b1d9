"""The study's bookkeeping in ``benchmarks/minatar_collect.py``: wall time per segment of a run
that was killed and resumed, read from its ``metrics.jsonl`` rows; runs recorded
earlier whose run directory is gone; and the study's ``--only`` picks."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import minatar_collect  # noqa: E402
import minatar_compare  # noqa: E402
import minatar_study  # noqa: E402


def test_segment_seconds_of_a_resumed_run_keep_the_later_sitting():
    # Sitting 1 reaches 15k and dies; its checkpoint is at 10k, so sitting 2 replays 10k–15k
    # (its clock restarts from the checkpoint's 100 s) and the replayed rows are the ones kept.
    rows = [{"step": 0, "time": 0.0}, {"step": 10_000, "time": 100.0}, {"step": 15_000, "time": 150.0},
            {"step": 12_000, "time": 130.0}, {"step": 20_000, "time": 250.0}, {"step": 30_000, "time": 350.0}]
    assert minatar_collect.segment_seconds(rows) == [150.0, 100.0]


def test_segment_seconds_interpolate_between_rows_and_skip_rows_without_a_clock():
    rows = [{"step": 5_000, "time": 50.0}, {"step": 8_000, "eval/return": 1.0},
            {"step": 25_000, "time": 250.0}, {"step": 31_000, "time": 310.0}]
    assert minatar_collect.segment_seconds(rows) == pytest.approx([100.0, 100.0])
    assert minatar_collect.segment_seconds(rows[:1]) == []


def test_recorded_runs_keep_only_the_runs_whose_directory_is_gone(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    for game, seed, step in (("breakout", 0, 250_000), ("asterix", 0, 130_000)):
        (out / f"minatar_{game}" / str(seed)).mkdir(parents=True)
        info = {"task": f"minatar_{game}", "seed": seed, "steps_reached": step}
        (out / f"minatar_{game}" / str(seed) / "run.json").write_text(json.dumps(info))
    # asterix seed 0 restarted here: its run directory is collected again, not kept
    kept = minatar_collect.recorded_runs(out, [runs / "asterix" / "0"])
    assert [(i["task"], i["steps_reached"]) for i in kept] == [("minatar_breakout", 250_000)]


def test_study_only_picks_runs_of_the_study_in_the_given_order():
    assert minatar_study.parse_only("freeway:0, asterix:0") == [("freeway", 0), ("asterix", 0)]
    with pytest.raises(ValueError, match="'pong:0' is not a run of the study"):
        minatar_study.parse_only("pong:0")
    with pytest.raises(ValueError, match="not a run of the study"):
        minatar_study.parse_only("breakout:x")


def test_compare_reads_a_resumed_run_at_equal_steps():
    # Sitting 1 logged 5k and 10k, died; sitting 2 replayed from its 5k checkpoint and logged 10k
    # again: the later row is the one the run kept. Eval rows carry no training signal.
    rows = [{"step": 5_000, "train/image_loss": 9.0}, {"step": 10_000, "train/image_loss": 8.0},
            {"step": 10_000, "eval/return": 2.0},
            {"step": 10_000, "train/image_loss": 7.5}, {"step": 15_000, "train/image_loss": 7.0}]
    train = minatar_compare.training_rows(rows)
    assert [r["step"] for r in train] == [5_000, 10_000, 15_000]
    assert minatar_collect.last_at(train, "train/image_loss", 12_000) == 7.5
    assert minatar_collect.last_at(train, "train/image_loss", 4_000) is None
    assert minatar_collect.last_at(train, "train/kl_loss", 15_000) is None
