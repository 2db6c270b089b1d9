"""`reverie scores` and `reverie plot` end to end on synthetic run directories written in the
real format of `reverie train` (docs/ARCHITECTURE.md, "Run directory")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from matplotlib.image import imread

from reverie.cli import main


def write_run(root, task, seed, final_evals, evals_per_point=3, truncate=True):
    """A run dir: config.yaml and metrics.jsonl with train, episode and eval lines at 3 points;
    the last eval point's returns are ``final_evals``; the file ends in a half-written line."""
    logdir = root / task / str(seed)
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text(yaml.safe_dump({"task": task, "seed": seed, "env": {"action_repeat": 4}}))
    lines = []
    for point, step in enumerate((1000, 2000, 3000)):
        base = {"step": step, "frames": 4 * step, "time": float(step)}
        lines.append({**base, "train/image_loss": 100.0 / (point + 1), "train/reward_loss": 1.0,
                      "train/kl_loss": 2.0, "train/model_kl": 3.0, "fps": 50.0})
        lines.append({**base, "episode/return": float(point), "episode/length": 100})
        returns = final_evals if point == 2 else [float(point + seed)] * evals_per_point
        lines += [{**base, "eval/return": float(r), "eval/length": 100} for r in returns]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    (logdir / "metrics.jsonl").write_text(text + ('{"step": 4000, "eval/ret' if truncate else ""))
    return logdir


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "atari_pong", 0, [10, 12, 14])
    write_run(root, "atari_pong", 1, [20, 20, 20])
    write_run(root, "atari_jamesbond", 0, [600, 800])
    write_run(root, "dmc_walker_walk", 0, [900])
    return root


def cli(*args):
    return subprocess.run([sys.executable, "-m", "reverie", *map(str, args)], capture_output=True, text=True)


def test_scores_json_from_runs(runs):
    result = cli("scores", runs, "--format", "json", "--last", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    games = {g["task"]: g for g in report["games"]}
    # Pong: seed 0 = mean(12, 14) = 13, seed 1 = 20 → 16.5; gamer-normalised (16.5 + 21) / 36.
    assert games["atari_pong"]["score"] == 16.5 and games["atari_pong"]["seeds"] == 2
    assert games["atari_pong"]["gamer_norm"] == pytest.approx(37.5 / 36)
    assert games["atari_jamesbond"]["score"] == 700 and games["atari_jamesbond"]["game"] == "James Bond"
    assert games["dmc_walker_walk"]["gamer_norm"] is None
    assert report["aggregates"]["games"] == 2
    assert report["aggregates"]["gamer_mean"] == pytest.approx((37.5 / 36 + 693 / 22) / 2)
    assert "Table K1 on the same 2 games" == report["reference_label"]
    assert "dmc_walker_walk: not an Atari task" in result.stderr and "2 of the paper's 55" in result.stderr


@pytest.mark.parametrize("fmt, expected", [("table", "clipped_record_mean"), ("markdown", "| Pong |"),
                                           ("csv", "game,task,seeds,score")])
def test_scores_formats(runs, capsys, fmt, expected):
    assert main(["scores", str(runs), "--format", fmt]) == 0
    assert expected in capsys.readouterr().out


def test_scores_csv_round_trip_and_baseline(runs, tmp_path, capsys):
    assert main(["scores", str(runs), "--format", "csv"]) == 0
    exported = tmp_path / "scores.csv"
    exported.write_text(capsys.readouterr().out)
    assert main(["scores", "--csv", str(exported), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["aggregates"]["games"] == 2
    assert main(["scores", "--baseline", "dreamerv2", "--format", "json"]) == 0
    aggregates = json.loads(capsys.readouterr().out)["aggregates"]
    assert aggregates["games"] == 55 and round(aggregates["clipped_record_mean"], 2) == 0.28


def test_plot_curves_png_and_svg(runs, tmp_path):
    out = tmp_path / "curves.png"
    result = cli("plot", runs / "atari_pong", runs / "atari_jamesbond", "--out", out)
    assert result.returncode == 0, result.stderr
    height, width = imread(out).shape[:2]
    assert (width, height) == (800, 370)  # 2 panels of 4 × 3 inches + legend strip, 100 dpi
    assert main(["plot", str(runs), "--out", str(tmp_path / "curves.svg"), "--metric", "episode/return"]) == 0
    assert (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")


def test_plot_world_model_and_bars(runs, tmp_path):
    assert main(["plot", str(runs), "--kind", "world_model", "--out", str(tmp_path / "wm.png")]) == 0
    height, width = imread(tmp_path / "wm.png").shape[:2]
    assert (width, height) == (1600, 370)  # image, reward, KL, model KL panels
    assert main(["plot", str(runs), "--kind", "bars", "--baseline", "iqn", "--out", str(tmp_path / "b.png")]) == 0
    csv = tmp_path / "s.csv"
    csv.write_text("game,score\nPong,20\nAssault,23625\nVideo Pinball,41860\n")
    assert main(["plot", "--kind", "bars", "--csv", str(csv), "--out", str(tmp_path / "b2.png")]) == 0
    assert imread(tmp_path / "b2.png").shape[:2] == (225, 700)


def test_scores_beside_a_reference_csv(runs, tmp_path):
    """``--reference``: the runs' tasks as columns, the published rows, then the runs' mean ± the
    sample std over seeds; a column may drop the task's family prefix, a missing cell is a dash."""
    ref = tmp_path / "ref.csv"
    ref.write_text("label,steps,pong,dmc_walker_walk\nA paper,1000000,15,\nB paper,0,,800\n")
    result = cli("scores", runs, "--reference", ref, "--last", 3)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| source | steps |") and "atari_pong" in lines[0] and "dmc_walker_walk" in lines[0]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = {label: [cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]
           for label in [line.strip("|").split("|")[0].strip()]}
    pong, walker = header.index("atari_pong"), header.index("dmc_walker_walk")
    assert row["A paper"][1] == "1M" and row["A paper"][pong] == "15.00" and row["A paper"][walker] == "—"
    assert row["B paper"][walker] == "800.00"
    ours = next(cells for label, cells in row.items() if label.startswith("**Reverie**"))
    assert ours[pong] == "**16.00** ± 5.66 (2 seeds)" and ours[walker] == "**300.67** (1 seed)"  # last 3 episodes: 1, 1, 900


@pytest.mark.parametrize("args, message", [
    (["scores", "{tmp}/missing"], "no such file or directory"),
    (["scores", "--baseline", "iqn", "--reference", "{tmp}/bad.csv"], "give LOGDIR"),
    (["scores", "{runs}", "--reference", "{tmp}/missing.csv"], "no such file"),
    (["scores", "{tmp}/empty"], "no runs"),
    (["scores", "--csv", "{tmp}/missing.csv"], "no such file"),
    (["scores", "--csv", "{tmp}/bad.csv"], "closest: Pong"),
    (["scores"], "exactly one of"),
    (["plot", "{tmp}/empty", "--out", "{tmp}/x.png"], "no runs"),
    (["plot", "{runs}", "--out", "{tmp}/x.pdf"], ".png or .svg"),
    (["plot", "--kind", "bars", "--csv", "{tmp}/bad.csv", "--out", "{tmp}/x.png"], "unknown Atari game"),
])
def test_bad_input_is_one_line_without_traceback(runs, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("game,score\nPongg,1\n")
    result = cli(*(a.format(tmp=tmp_path, runs=runs) for a in args))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("reverie: error:") and result.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------
# The twins of the synthetic runs above: run directories written by the real `reverie train`,
# laid out by the sweep's plan (ROOT/<preset dir>/<task>/<seed>), two preset variants.

STUDY = ["device=cpu", "env.time_limit=200", "run.prefill=100", "run.eval_every=100", "run.eval_episodes=2",
         "run.log_every=100", "run.checkpoint_every=200"]
VARIANTS = ("debug", "debug+no_layer_norm")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 variants × atari_pong × seeds 0, 1: each run is the argv the sweep gives `reverie
    train`, run in-process (no Ray), 200 agent steps with evaluations at 100 and 200."""
    from reverie.sweep import make_plan, train_argv

    root = tmp_path_factory.mktemp("study")
    plan = make_plan(root, "atari_pong", "0,1", "debug;debug,no_layer_norm", STUDY, steps=200)
    for run in plan.runs:
        assert main(train_argv(plan, run)) == 0
    return root


def _final_score(logdir, last):
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    returns = [r["eval/return"] for r in rows if "eval/return" in r]
    assert len(returns) == 4  # 2 episodes at step 100 and at 200
    return sum(returns[-last:]) / len(returns[-last:])


def test_scores_of_a_study_report_every_variant(study):
    result = cli("scores", study, "--format", "json", "--last", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["variants"]) == list(VARIANTS)  # before the fix: one variant, the other dropped
    for variant in VARIANTS:
        (game,) = report["variants"][variant]["games"]
        expected = [_final_score(study / variant / "atari_pong" / seed, 2) for seed in ("0", "1")]
        assert game["task"] == "atari_pong" and game["seeds"] == 2
        assert game["score"] == pytest.approx(sum(expected) / 2)
        assert report["comparison"]["gamer_mean"][variant] == pytest.approx(game["gamer_norm"])
    assert "ignored" not in result.stderr
    markdown = cli("scores", study, "--format", "markdown")
    assert markdown.stdout.count("## Variant") == 2 and "## Comparison of the variants" in markdown.stdout
    table = cli("scores", study)
    assert table.returncode == 0 and "Aggregates of the variants side by side" in table.stdout
    # One variant's folder is an ordinary single report.
    single = json.loads(cli("scores", study / "debug", "--format", "json").stdout)
    assert [g["task"] for g in single["games"]] == ["atari_pong"] and "variants" not in single


def test_scores_csv_of_a_study_has_a_variant_column_and_reads_back_one_variant(study, tmp_path):
    exported = cli("scores", study, "--format", "csv").stdout
    assert exported.splitlines()[0].startswith("variant,game,")
    both = tmp_path / "both.csv"
    both.write_text(exported)
    refused = cli("scores", "--csv", both)
    assert refused.returncode == 2 and "2 variants" in refused.stderr
    one = tmp_path / "one.csv"
    one.write_text("\n".join(line for i, line in enumerate(exported.splitlines()) if i == 0 or line.startswith("debug,")))
    assert cli("scores", "--csv", one, "--format", "json").returncode == 0


def test_plot_of_a_study_draws_every_variant(study, tmp_path):
    out = tmp_path / "curves.svg"
    result = cli("plot", study, "--out", out)
    assert result.returncode == 0, result.stderr
    svg = out.read_text()  # matplotlib keeps each text as a comment in SVG
    for variant in VARIANTS:
        assert f"{variant} (mean over seeds)" in svg
    assert "Pong (2 seeds)" in svg and "DreamerV2 (paper, 200M frames)" in svg
    wm = tmp_path / "wm.svg"
    assert cli("plot", study, "--kind", "world_model", "--out", wm).returncode == 0
    assert "Pong (debug+no_layer_norm)" in wm.read_text()
    bars = cli("plot", study, "--kind", "bars", "--out", tmp_path / "bars.png")
    assert bars.returncode == 2 and "2 variants" in bars.stderr and "Traceback" not in bars.stderr
    assert cli("plot", study / "debug", "--kind", "bars", "--out", tmp_path / "bars.png").returncode == 0


def test_scores_and_plot_of_one_real_train_run(study, tmp_path):
    logdir = study / "debug" / "atari_pong" / "0"
    report = json.loads(cli("scores", logdir, "--format", "json", "--last", "2").stdout)
    assert report["games"][0]["score"] == pytest.approx(_final_score(logdir, 2))
    assert report["games"][0]["source"] == "eval/return in metrics.jsonl"
    assert cli("plot", logdir, "--out", tmp_path / "c.png").returncode == 0
    height, width = imread(tmp_path / "c.png").shape[:2]
    assert (width, height) == (400, 370)
    assert cli("plot", logdir, "--kind", "world_model", "--out", tmp_path / "wm.png").returncode == 0


def test_a_recorded_study_scores_and_plots_as_its_runs(study, tmp_path):
    """``benchmarks.record_study`` on the real runs: the condensed copy keeps every variant,
    task and seed with the same final scores, and each run's ``run.json`` says it finished."""
    from benchmarks import record_study

    out = tmp_path / "recorded"
    summary = record_study.record(study, out, None, 2, 100, False, None)
    assert sorted(summary["runs"]) == sorted(f"{v}/atari_pong/{s}" for v in VARIANTS for s in ("0", "1"))
    assert all(run["finished"] and run["steps_reached"] == 200 for run in summary["runs"].values())
    ours = json.loads(cli("scores", out, "--format", "json", "--last", "2").stdout)
    theirs = json.loads(cli("scores", study, "--format", "json", "--last", "2").stdout)
    assert ours["comparison"] == theirs["comparison"]
    assert [v["games"][0]["score"] for v in ours["variants"].values()] == \
        [v["games"][0]["score"] for v in theirs["variants"].values()]
    assert cli("plot", study, "--kind", "world_model", "--out", tmp_path / "wm.png").returncode == 0
    assert imread(out / "world_model.png").shape == imread(tmp_path / "wm.png").shape
    assert (out / "curves.png").is_file() and record_study.BEGIN in (out / "README.md").read_text()


def test_minatar_references_are_drawn_at_their_own_steps_up_to_twice_the_curves(tmp_path):
    from reverie.report.plot import minatar_points
    port, dqn = "a public PyTorch DreamerV2, minimal actions", "DQN, Young & Tian 2019, 6 actions"
    assert minatar_points("breakout", 250_000) == {
        "port_": (port, [(200_000, 4.6), (300_000, 5.1), (500_000, 5.0)]), "dqn_": (dqn, [(250_000, 6.7)])}
    assert minatar_points("freeway", 250_000) == {"port_": (port, [(200_000, 14.7), (300_000, 14.4), (500_000, 15.0)])}
    assert minatar_points("asterix", 50_000) == {}  # nothing published at 100k steps or fewer
    logdir = tmp_path / "minatar_breakout" / "0"  # a curve to 250k frames, in `reverie train`'s format
    logdir.mkdir(parents=True)
    (logdir / "config.yaml").write_text(yaml.safe_dump({"task": "minatar_breakout", "seed": 0, "env": {"action_repeat": 1}}))
    (logdir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "frames": s, "eval/return": s / 5e4}) + "\n"
                                                  for s in (50_000, 150_000, 250_000)))
    out = tmp_path / "curves.svg"
    assert cli("plot", logdir, "--out", out).returncode == 0
    svg = out.read_text().replace("&amp;", "&")  # the labels, kept as SVG comments, XML-escaped
    assert f"{port}, at its steps" in svg and f"{dqn}, at its steps" in svg and "random policy, minimal actions" in svg
