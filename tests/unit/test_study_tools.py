"""``benchmarks.record_study``, which records a study's runs into a results folder: wall time per
segment of a run that was killed and resumed, the condensed files of one run, runs recorded
earlier whose run directory is gone, the README block that keeps the text around it; and
``benchmarks.diagnostics.compare_runs`` reading a resumed run at equal steps. The twin fed by
real ``reverie train`` runs is in ``integration/test_scores_plot_cli.py``."""

import json

import pytest
import yaml

from benchmarks import record_study
from benchmarks.diagnostics import compare_runs


def test_segment_seconds_of_a_resumed_run_keep_the_later_sitting():
    # Sitting 1 reaches 15k and dies; its checkpoint is at 10k, so sitting 2 replays 10k–15k
    # (its clock restarts from the checkpoint's 100 s) and the replayed rows are the ones kept.
    rows = [{"step": 0, "time": 0.0}, {"step": 10_000, "time": 100.0}, {"step": 15_000, "time": 150.0},
            {"step": 12_000, "time": 130.0}, {"step": 20_000, "time": 250.0}, {"step": 30_000, "time": 350.0}]
    assert record_study.segment_seconds(rows) == [150.0, 100.0]
    # A slow sitting 1 (300 s for 10k–20k) reached 25k; sitting 2 redid 10k–30k at 100 s per 10k.
    rows = [{"step": 0, "time": 0.0}, {"step": 10_000, "time": 100.0}, {"step": 20_000, "time": 400.0},
            {"step": 25_000, "time": 500.0}, {"step": 20_000, "time": 200.0}, {"step": 30_000, "time": 300.0}]
    assert record_study.segment_seconds(rows) == [100.0, 100.0]


def test_segment_seconds_interpolate_between_rows_and_skip_rows_without_a_clock():
    rows = [{"step": 5_000, "time": 50.0}, {"step": 8_000, "eval/return": 1.0},
            {"step": 25_000, "time": 250.0}, {"step": 31_000, "time": 310.0}]
    assert record_study.segment_seconds(rows) == pytest.approx([100.0, 100.0])
    assert record_study.segment_seconds(rows[:1]) == []


def test_compare_reads_a_resumed_run_at_equal_steps():
    # Sitting 1 logged 5k and 10k, died; sitting 2 replayed from its 5k checkpoint and logged 10k
    # again: the later row is the one the run kept. Eval rows carry no training signal.
    rows = [{"step": 5_000, "train/image_loss": 9.0}, {"step": 10_000, "train/image_loss": 8.0},
            {"step": 10_000, "eval/return": 2.0},
            {"step": 10_000, "train/image_loss": 7.5}, {"step": 15_000, "train/image_loss": 7.0}]
    train = compare_runs.training_rows(rows)
    assert [r["step"] for r in train] == [5_000, 10_000, 15_000]
    assert record_study.last_at(train, "train/image_loss", 12_000) == 7.5
    assert record_study.last_at(train, "train/image_loss", 4_000) is None
    assert record_study.last_at(train, "train/kl_loss", 15_000) is None


def test_compare_tables_any_task_with_whole_numbers_for_large_losses_and_the_sampled_policy_if_recorded(
        tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "a", "dmc_walker_walk", 0, [100.0, 300.0], 20_000, sampled=[250.0])
    write_run(tmp_path / "b", "dmc_walker_walk", 1, [50.0], 20_000)
    with (tmp_path / "b" / "metrics.jsonl").open("a") as rows:  # a 64×64×3 Gaussian image loss
        rows.write(json.dumps({"step": 20_000, "train/image_loss": 11_312.4}) + "\n")

    def table(title, *runs):
        monkeypatch.setattr("sys.argv", ["compare_runs", *(f"{r}={tmp_path / r}" for r in runs)])
        assert compare_runs.main() == 0
        lines = capsys.readouterr().out.splitlines()
        at = [i for i, line in enumerate(lines) if line.startswith(title)]
        return lines[at[0] + 4:at[0] + 6] if at else None

    assert table("image loss", "a", "b") == ["| 10k | 9 | 9 |", "| 20k | 9 | 11,312 |"]
    assert table("eval return (mode", "a", "b") == ["| 10k |  |  |", "| 20k | 200 | 50 |"]
    assert table("eval return (sampled", "a", "b") == ["| 10k |  |  |", "| 20k | 250 |  |"]
    assert table("eval return (sampled", "b") is None  # no run has it: no empty table


def write_run(logdir, task, seed, returns, step, finished=True, target=20_000, sampled=()):
    """A run directory as ``reverie train`` leaves it: config, status, per-episode and eval rows
    (``sampled``: the sampled-action policy's eval episodes, ``run.eval_sample``)."""
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text(yaml.safe_dump({"task": task, "seed": seed, "run": {"steps": target}}))
    (logdir / "status.json").write_text(json.dumps({"state": "finished" if finished else "running",
                                                    "step": step, "wall_seconds": 600.0}))
    rows = [{"step": s, "episode/return": r} for s, r in ((1_000, 1.0), (4_000, 3.0), (6_000, 5.0))]
    rows += [{"step": 10_000, "time": 100.0, "train/image_loss": 9.0}, {"step": 20_000, "time": 160.0}]
    rows += [{"step": 20_000, "eval/return": r} for r in returns]
    rows += [{"step": 20_000, "eval/return_sample": r, "eval/length_sample": 9} for r in sampled]
    (logdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_recorded_run_keeps_evals_and_training_rows_and_averages_episodes_per_window(tmp_path):
    write_run(tmp_path / "runs" / "gym_CartPole-v1" / "0", "gym_CartPole-v1", 0, [10.0, 30.0], 20_000)
    (run,) = record_study.load_runs([tmp_path / "runs"])
    info = record_study.record_run(run, tmp_path / "out", None, last=2, window=5_000)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    windows = [(r["step"], r["episode/return"], r["episodes"]) for r in rows if "episode/return" in r]
    assert windows == [(5_000, 2.0, 2), (10_000, 5.0, 1)]  # the episodes ending in 0–5k, 5–10k
    assert [r["eval/return"] for r in rows if "eval/return" in r] == [10.0, 30.0]
    assert any("train/image_loss" in r for r in rows) and not any(set(r) == {"step", "time"} for r in rows)
    assert (tmp_path / "out" / "curve.csv").read_text().splitlines()[1] == "20000,20.000,10.000,2,"
    assert info["final_score"] == 20.0 and info["finished"] and info["steps_target"] == 20_000
    assert info["seconds_per_100k_steps"] == 3000.0  # 600 s over 20k steps
    assert "machine" not in info  # not --local: the runs record no machine
    write_run(tmp_path / "runs" / "gym_CartPole-v1" / "1", "gym_CartPole-v1", 1, [5.0], 20_000, finished=False)
    running = record_study.load_runs([tmp_path / "runs" / "gym_CartPole-v1" / "1"])[0]
    assert not record_study.record_run(running, tmp_path / "out1", None, last=2)["finished"]  # killed at its last step


def test_reverie_eval_invocations_are_copied_and_tabled_one_row_per_checkpoint_policy_and_invocation(tmp_path):
    run = tmp_path / "runs" / "minatar" / "minatar_asterix" / "0"
    write_run(run, "minatar_asterix", 0, [1.0], 20_000)
    episodes = [(10_000, "mode", [0.0, 2.0]), (20_000, "mode", [1.0, 2.0, 3.0]), (20_000, "sample", [4.0, 0.0]),
                (20_000, "sample", [5.0])]  # the last: a second invocation at 20k, its episodes from 0 again
    rows = [{"step": s, "policy": p, "episode": e, "return": r, "length": 9}
            for s, p, returns in episodes for e, r in enumerate(returns)]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    summary = record_study.record(tmp_path / "runs", out, None, 1, 5_000, False, None)
    got = summary["runs"]["minatar/minatar_asterix/0"]["eval_runs"]
    assert [(e["step"], e["policy"], e["episodes"], e["mean"]) for e in got] == [
        (10_000, "mode", 2, 1.0), (20_000, "mode", 3, 2.0), (20_000, "sample", 2, 2.0), (20_000, "sample", 1, 5.0)]
    assert got[1]["std"] == 1.0 and got[3]["std"] == 0.0
    assert (out / "minatar" / "minatar_asterix" / "0" / "eval.jsonl").read_text() == (run / "eval.jsonl").read_text()
    assert "| `minatar/minatar_asterix/0` | 20,000 | mode | 3 | 2.00 ± 1.00 |" in (out / "README.md").read_text()
    (run / "eval.jsonl").unlink()  # a run never given to `reverie eval`: no table, no file
    summary = record_study.record(tmp_path / "runs", tmp_path / "out2", None, 1, 5_000, False, None)
    assert summary["runs"]["minatar/minatar_asterix/0"]["eval_runs"] == []
    assert "checkpoint step | policy" not in (tmp_path / "out2" / "README.md").read_text()
    assert not (tmp_path / "out2" / "minatar" / "minatar_asterix" / "0" / "eval.jsonl").exists()


def test_recording_keeps_runs_whose_directory_is_gone_and_the_text_around_the_block(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_run(runs / "minatar" / "minatar_breakout" / "0", "minatar_breakout", 0, [4.0, 6.0], 20_000)
    write_run(runs / "minatar" / "minatar_asterix" / "0", "minatar_asterix", 0, [1.0, 1.0], 20_000)
    record_study.record(runs, out, None, 2, 5_000, False, None)
    readme = out / "README.md"
    readme.write_text("# A study\n\nWhat was run and why.\n\n" + readme.read_text().split("\n\n", 1)[1]
                      + "\nA diagnosis written by hand.\n")
    # asterix restarts from step 0 here; breakout's run directory is gone (a fresh checkout)
    (runs / "minatar" / "minatar_breakout" / "0" / "metrics.jsonl").unlink()
    (runs / "minatar" / "minatar_breakout" / "0" / "config.yaml").unlink()
    (runs / "minatar" / "minatar_asterix" / "0" / "metrics.jsonl").write_text("")
    (runs / "minatar" / "minatar_asterix" / "0" / "status.json").write_text(json.dumps({"step": 0}))
    capsys.readouterr()
    summary = record_study.record(runs, out, None, 2, 5_000, False, None)
    assert capsys.readouterr().out.splitlines() == [
        f"kept the recorded minatar/minatar_breakout/0: its run directory is not under {runs}"]
    kept = summary["runs"]["minatar/minatar_breakout/0"]
    assert (kept["steps_reached"], kept["final_score"]) == (20_000, 5.0)  # the recorded files stay
    assert summary["runs"]["minatar/minatar_asterix/0"]["steps_reached"] == 0  # recorded again
    text = readme.read_text()
    assert text.startswith("# A study\n\nWhat was run and why.\n") and text.endswith("A diagnosis written by hand.\n")
    assert text.count(record_study.BEGIN) == 1 and "PARTIAL" in text
    assert (out / "curves.png").is_file() and (out / "world_model.png").is_file()


def test_a_run_folder_copied_into_the_results_by_hand_is_recorded_in_place(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_run(runs / "pilots" / "minatar_breakout" / "0", "minatar_breakout", 0, [4.0, 6.0], 20_000)
    # an earlier pilot's raw files, copied by hand: config, metrics, status, no run.json
    write_run(out / "pilots" / "minatar_asterix_partial" / "0", "minatar_asterix", 0, [0.5], 15_000,
              finished=False)
    summary = record_study.record(runs, out, None, 2, 5_000, False, None)
    assert capsys.readouterr().out.splitlines() == [
        "recorded pilots/minatar_asterix_partial/0 in place from its own files: it had no run.json"]
    copied = summary["runs"]["pilots/minatar_asterix_partial/0"]
    assert (copied["steps_reached"], copied["finished"], copied["final_score"]) == (15_000, False, 0.5)
    rows = (out / "pilots" / "minatar_asterix_partial" / "0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["episodes"] for r in rows if "episodes" in json.loads(r)] == [2, 1]  # per window
    again = record_study.record(runs, out, None, 2, 5_000, False, None)  # now recorded: kept as it is
    assert capsys.readouterr().out.splitlines() == [
        f"kept the recorded pilots/minatar_asterix_partial/0: its run directory is not under {runs}"]
    assert again["runs"]["pilots/minatar_asterix_partial/0"] == copied


def test_an_out_folder_holding_another_recorded_study_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    write_run(runs / "dmc" / "dmc_walker_walk" / "0", "dmc_walker_walk", 0, [30.0], 20_000)
    write_run(tmp_path / "pilot" / "dmc_cartpole_swingup" / "0", "dmc_cartpole_swingup", 0, [200.0], 20_000)
    record_study.record(tmp_path / "pilot", results / "pilot", None, 2, 5_000, False, None)
    pilot_rows = (results / "pilot" / "dmc_cartpole_swingup" / "0" / "metrics.jsonl").read_text()
    monkeypatch.setattr("sys.argv", ["record_study", str(runs), str(results)])
    assert record_study.main() == 2  # the pilot's run would count as a seed of this study
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(results / "pilot") in error and str(results / "study") in error
    assert (results / "pilot" / "dmc_cartpole_swingup" / "0" / "metrics.jsonl").read_text() == pilot_rows
    assert not (results / "summary.json").exists()
    summary = record_study.record(runs, results / "study", None, 2, 5_000, False, None)  # its own folder: fine
    assert list(summary["runs"]) == ["dmc/dmc_walker_walk/0"]


def test_the_summary_lists_each_tasks_seeds_and_final_scores_at_the_frames_trained(tmp_path):
    runs = tmp_path / "runs"
    for seed, returns in ((1, [30.0, 50.0]), (0, [10.0, 20.0])):
        write_run(runs / "dmc_walker_walk" / str(seed), "dmc_walker_walk", seed, returns, 20_000)
    config = runs / "dmc_walker_walk" / "0" / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "env": {"action_repeat": 2}}))
    config1 = runs / "dmc_walker_walk" / "1" / "config.yaml"
    config1.write_text(config.read_text().replace("seed: 0", "seed: 1"))
    summary = record_study.record(runs, tmp_path / "out", None, 2, 5_000, False, None)
    assert (summary["steps"], summary["frames"]) == (20_000, 40_000)  # 20k agent steps at action repeat 2
    assert summary["tasks"] == {"dmc_walker_walk": {"seeds": [0, 1], "eval": [15.0, 40.0]}}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["tasks"] == summary["tasks"]
    assert "games" not in summary  # the MinAtar view only for MinAtar's games


def test_the_minatar_summary_holds_mode_and_sampled_policy_per_game(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_run(runs / "minatar_breakout" / "1", "minatar_breakout", 1, [4.0, 6.0, 8.0], 20_000, sampled=[1.0, 3.0, 5.0])
    write_run(runs / "minatar_breakout" / "0", "minatar_breakout", 0, [2.0, 2.0], 20_000, sampled=[7.0])
    write_run(runs / "minatar_freeway" / "0", "minatar_freeway", 0, [20.0, 22.0], 20_000)  # no sampled evals
    summary = record_study.record(runs, out, None, 2, 5_000, False, None)
    assert summary["steps"] == 20_000
    assert summary["games"] == {"breakout": {"seeds": [0, 1], "eval_mode": [2.0, 7.0], "eval_sample": [7.0, 4.0]},
                                "freeway": {"seeds": [0], "eval_mode": [21.0], "eval_sample": [None]}}
    assert summary["runs"]["minatar_breakout/1"]["final_score_sample"] == 4.0  # the last 2 of 3
    rows = [json.loads(line) for line in (out / "minatar_breakout" / "1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/return_sample"] for r in rows if "eval/return_sample" in r] == [1.0, 3.0, 5.0]
    assert "| `minatar_breakout/1` | 20,000 | yes | 7.00 | 4.00 |" in (out / "README.md").read_text()


def test_the_reference_table_compares_at_equal_steps_with_a_row_for_the_sampled_policy(tmp_path):
    runs, csv = tmp_path / "runs", tmp_path / "reference.csv"
    write_run(runs / "minatar_breakout" / "0", "minatar_breakout", 0, [2.0, 4.0], 20_000, sampled=[5.0, 7.0])
    write_run(runs / "minatar_breakout" / "1", "minatar_breakout", 1, [4.0, 6.0], 20_000, sampled=[1.0, 3.0])
    csv.write_text("key,label,steps,breakout\nrandom,random policy,0,0.4\nat,port at 20k,20000,4.6\n"
                   "twice,port at 40k,40000,5.0\nfar,port at 100k,100000,9.0\n")
    record_study.record(runs, tmp_path / "out", None, 2, 5_000, False, csv)
    text = (tmp_path / "out" / "README.md").read_text()
    assert all(f"| {label} |" in text for label in ("random policy", "port at 20k", "port at 40k"))
    assert "port at 100k" not in text and "1 reference rows at more than twice the study's 20,000 steps" in text
    assert "| **4.00** ± 1.41 (2 seeds) |" in text  # the mode policy: 3 and 5
    assert "| Reverie, sampled actions (eval/return_sample in metrics.jsonl) | | 4.00 ± 2.83 (2 seeds) |" in text


def test_the_readme_names_the_sweep_that_ran_the_study(tmp_path):
    from reverie.sweep.plan import make_plan, write_plan

    plan = make_plan(tmp_path / "study", "minatar_breakout", "0,1", "minatar", ["run.eval_every=5000"], steps=20_000)
    write_plan(plan)
    expected = (f"reverie sweep --tasks minatar_breakout --seeds 0,1 --preset 'minatar' --set run.eval_every=5000 "
                f"--steps 20000 --logdir {plan.root}")
    assert record_study.sweep_command(plan.root) == expected
    assert record_study.sweep_command(plan.root / "minatar") == expected  # ROOT/<preset> of one variant
    assert record_study.sweep_command(tmp_path) is None


def test_no_runs_and_nothing_recorded_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["record_study", str(tmp_path / "nothing"), str(tmp_path / "out")])
    assert record_study.main() == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_the_scores_and_summary_count_only_finished_runs_and_the_run_table_lists_all(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_run(runs / "minatar_breakout" / "0", "minatar_breakout", 0, [2.0, 4.0], 20_000, sampled=[5.0])
    write_run(runs / "minatar_breakout" / "1", "minatar_breakout", 1, [9.0, 9.0], 20_000, finished=False, target=40_000)
    write_run(runs / "minatar_freeway" / "0", "minatar_freeway", 0, [20.0], 10_000, finished=False)
    summary = record_study.record(runs, out, None, 2, 5_000, False, None)
    assert summary["games"] == {"breakout": {"seeds": [0], "eval_mode": [3.0], "eval_sample": [5.0]}}
    assert [row["score"] for row in summary["variants"]["(root)"]["games"]] == [3.0]  # seed 1 at 20k of 40k: out
    text = (out / "README.md").read_text()
    assert "2 of 3 runs are short of their target steps" in text and "| minatar_breakout | 1 | 3.00 |" in text
    assert "| `minatar_breakout/1` | 20,000 | no | 9.00 |" in text and "| `minatar_freeway/0` | 10,000 | no | 20.00 |" in text
    (runs / "minatar_breakout" / "0" / "status.json").write_text(json.dumps({"state": "running", "step": 10_000}))
    summary = record_study.record(runs, out, None, 2, 5_000, False, None)
    assert summary["tasks"] == {} and "No run has reached its target steps yet" in (out / "README.md").read_text()
