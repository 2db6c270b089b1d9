"""One rule for evaluation seeds (``reverie.envs.eval_seed``): the evaluation of a run at agent
step S is a function of (seed, S), so ``reverie eval`` on the checkpoint of step S plays the very
episodes the run's own evaluation at S played (real CLI, CartPole on the debug preset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from reverie.envs import env_seed, eval_seed

STEPS = 200
RUN = ["--task", "gym_CartPole-v1", "--preset", "gym,debug", "--set", "device=cpu", "--set", "run.prefill=100",
       "--set", "run.log_every=100", "--set", "run.eval_every=200", "--set", "run.eval_episodes=3",
       "--set", "run.checkpoint_every=200", "--set", "run.pretrain=2"]


def test_eval_seed_is_one_deterministic_rule():
    seeds = {eval_seed(seed, step) for seed in range(3) for step in (0, 1, 10_000, 250_000)}
    assert len(seeds) == 12 and all(0 <= s < 2**31 for s in seeds)  # distinct, in every suite's range
    assert eval_seed(0, 1) == eval_seed(0, 1) and eval_seed(1, 0) != eval_seed(0, 1)  # not seed + step
    assert all(env_seed(seed, "train") == seed not in seeds for seed in range(3))
    assert env_seed(2, "eval", 500) == eval_seed(2, 500)


def test_reverie_eval_repeats_the_runs_evaluation_at_the_checkpoint_step(tmp_path):
    logdir = tmp_path / "run"
    reverie("train", *RUN, "--logdir", str(logdir), "--steps", str(STEPS))
    during = [(r["eval/return"], r["eval/length"]) for r in read_jsonl(logdir / "metrics.jsonl") if "eval/return" in r]
    reverie("eval", "--logdir", str(logdir))
    after = [(r["return"], r["length"]) for r in read_jsonl(logdir / "eval.jsonl")]
    assert len(during) == 3 and after == during
    assert len(set(during)) > 1  # three different episodes, not one repeated


def reverie(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_sample_plays_the_same_episodes_with_sampled_actions(tmp_path):
    """``run.eval_sample``: each evaluation also plays the sampled-action policy on the same
    eval seeds, logged as ``eval/return_sample``; ``eval/return`` is the mode policy's, unchanged."""
    from reverie.config import load_config
    from reverie.run.train import train

    overrides = ["task=gym_CartPole-v1", "device=cpu", "run.prefill=100", "run.pretrain=2", "run.steps=200",
                 "run.eval_every=200", "run.eval_episodes=3", "run.checkpoint_every=200", "run.log_every=100"]
    rows = {}
    for sample in (False, True):
        train(load_config("gym,debug", [*overrides, f"run.eval_sample={sample}"]), tmp_path / str(sample), quiet=True)
        rows[sample] = read_jsonl(tmp_path / str(sample) / "metrics.jsonl")
    mode = lambda lines: [r["eval/return"] for r in lines if "eval/return" in r]  # noqa: E731
    sampled = [r["eval/return_sample"] for r in rows[True] if "eval/return_sample" in r]
    assert mode(rows[True]) == mode(rows[False]) and len(sampled) == 3
    assert not any("eval/return_sample" in r for r in rows[False])
    # The real twin of unit/test_study_tools.py's sampled rows: the recorder keeps them and scores them.
    from benchmarks import record_study

    summary = record_study.record(tmp_path / "True", tmp_path / "recorded", None, 2, 100, False, None)
    (info,) = summary["runs"].values()
    assert info["final_score_sample"] == sum(sampled[-2:]) / 2
    assert summary["tasks"]["gym_CartPole-v1"]["eval_sample"] == [info["final_score_sample"]]
    # `reverie eval` on that run plays what its evaluation at the checkpoint's step played, both policies.
    reverie("eval", "--logdir", str(tmp_path / "True"))
    played = read_jsonl(tmp_path / "True" / "eval.jsonl")
    assert [r["return"] for r in played if r["policy"] == "mode"] == mode(rows[True])
    assert [(r["return"], r["length"]) for r in played if r["policy"] == "sample"] == [
        (r["eval/return_sample"], r["eval/length_sample"]) for r in rows[True] if "eval/return_sample" in r]
    reverie("eval", "--logdir", str(tmp_path / "True"), "--policy", "sample", "--episodes", "1")
    assert [r["policy"] for r in read_jsonl(tmp_path / "True" / "eval.jsonl")[len(played):]] == ["sample"]
    # The real twin of unit/test_study_tools.py's eval.jsonl: the recorder copies it and keeps each
    # invocation apart (the second one plays episode 0 again, a sample of 1).
    (info,) = record_study.record(tmp_path / "True", tmp_path / "recorded", None, 2, 100, False, None)["runs"].values()
    modes = [r["return"] for r in played if r["policy"] == "mode"]
    assert [(e["step"], e["policy"], e["episodes"]) for e in info["eval_runs"]] == [
        (STEPS, "mode", 3), (STEPS, "sample", 3), (STEPS, "sample", 1)]
    assert info["eval_runs"][0]["mean"] == round(sum(modes) / 3, 3)
    assert (tmp_path / "recorded" / "eval.jsonl").read_text() == (tmp_path / "True" / "eval.jsonl").read_text()
