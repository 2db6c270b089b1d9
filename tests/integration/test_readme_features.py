"""What the README promises, run end to end through the real entry points: every preset in a
short real run, `reverie tasks` and `config --params`, the Python API snippet, `reverie demo`
(slow). Every command in the README's code blocks: those that finish in seconds (`config`,
`tasks`, `scores --baseline`) run, the error examples print the line the README shows, and
every other one (200M-frame runs, studies) is parsed by the real CLI parser, so a renamed
option or command fails here; its `make` targets exist. Scores and plots of real runs and
studies: test_scores_plot_cli.py and test_sweep.py; eval --video, resume refusals and
checkpoint pruning: test_train.py; bench: unit/test_bench.py."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from reverie.cli import build_parser, main
from reverie.config import PRESET_BASES, load_config_file, preset_names, read_preset

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["device=cpu", "run.steps=60", "run.prefill=40", "run.pretrain=1", "run.train_every=10",
         "run.log_every=30", "run.eval_every=60", "run.eval_episodes=1", "run.checkpoint_every=60",
         "env.time_limit=80", "replay.minlen=10"]  # presets with replay.ongoing false learn from step 40 on


def composition(preset: str) -> list[str]:
    """The presets a preset is trained with: its task's suite preset (`atari` for ablations,
    which name no task), the preset, then `debug` for the small sizes. Presets apply left to
    right; `debug` sets sizes and the schedule, never a key of a preset that names no task, so
    every value of an ablation reaches the run (`gaussian,debug` is Gaussian; it once was not,
    debug set `classes`), while a task preset's sizes (`cartpole`) give way to debug's.
    `load_config` warns when a later preset changes a value of one that names no task."""
    task = read_preset(preset).get("task")
    family = task.split("_", 1)[0] if task else PRESET_BASES.get(preset, "atari")
    if preset in (family, "debug"):
        return [family, "debug"]
    return [family, preset, "debug"] if family in preset_names() else [preset, "debug"]


def leaves(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same(saved, given) -> bool:
    if isinstance(saved, float) and isinstance(given, (str, int)):
        return saved == pytest.approx(float(given))  # "3e-4" is a string to YAML 1.1
    return saved == given or (isinstance(saved, list) and list(saved) == list(given))


@pytest.mark.parametrize("preset", preset_names())  # every file in src/reverie/presets: none skipped
def test_every_preset_trains_in_a_short_real_run(preset, tmp_path, capsys):
    presets = composition(preset)
    logdir = tmp_path / "run"
    assert main(["train", "--preset", ",".join(presets), "--logdir", str(logdir),
                 *[arg for item in SHORT for arg in ("--set", item)]]) == 0, capsys.readouterr().err
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 60
    assert (logdir / "checkpoints" / f"{60:012d}" / "COMPLETE").exists()
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "train/model_loss" in r]
    assert trained and all(r[f"train/{p}_skipped"] == 0 for r in trained for p in ("model", "actor", "critic"))
    assert any("eval/return" in r for r in rows)
    # The preset reached the run: each of its values that neither a later preset nor SHORT sets.
    saved = load_config_file(logdir / "config.yaml")
    later = {key for name in presets[presets.index(preset) + 1:] for key in leaves(read_preset(name))}
    later |= {item.split("=")[0] for item in SHORT}
    own = {k: v for k, v in leaves(read_preset(preset)).items() if k not in later}
    assert own or preset == "debug"
    for key, value in own.items():
        current = saved
        for part in key.split("."):
            current = getattr(current, part)
        assert same(current, value), (key, current, value)


def test_tasks_lists_every_suite_and_marks_the_55_games():
    out = subprocess.run([sys.executable, "-m", "reverie", "tasks"], capture_output=True, text=True, check=True).stdout
    starred = [line.split()[1] for line in out.splitlines() if line.strip().startswith("* atari_")]
    assert len(starred) == 55 and "atari_pong" in starred and "atari_montezuma_revenge" in starred
    assert "  dmc_walker_walk" in out and "gym_CartPole-v1" in out
    atari = subprocess.run([sys.executable, "-m", "reverie", "tasks", "--suite", "atari"], capture_output=True,
                           text=True, check=True).stdout
    assert "dmc_" not in atari and atari.count("* atari_") == 55


def test_config_params_prints_the_papers_sizes():
    """README: 19.98M world-model parameters at `atari`, 22.25M in all (paper: ~20M and ~1M each)."""
    out = subprocess.run([sys.executable, "-m", "reverie", "config", "--preset", "atari", "--params"],
                         capture_output=True, text=True, check=True).stdout
    counts = {line.split()[0]: int(line.split("(")[1].rstrip(")").replace(",", "")) for line in out.splitlines()}
    world_model = sum(counts[k] for k in ("encoder", "rssm", "decoder", "reward", "discount"))
    assert round(world_model / 1e6, 2) == 19.98 and round(counts["total"] / 1e6, 2) == 22.25
    assert counts["total"] == world_model + counts["actor"] + counts["critic"]


def test_readme_python_api_snippet_runs():
    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"Python API:\s*```python\n(.*?)```", text, re.S)
    assert snippet, "README.md has no ```python block after 'Python API:'"
    namespace: dict = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the README's own code
    config, env, agent = namespace["config"], namespace["env"], namespace["agent"]
    assert config.replay.batch == 16 and config.world_model.rssm.layer_norm is False
    assert env.obs_space["image"].shape == (64, 64, 1) and env.act_space.n == 18
    from reverie.run.driver import batch_obs

    action, _ = agent.policy(batch_obs(env.reset()), None, "train")
    assert action.shape == (1, 18) and action.sum() == 1
    env.close()


def readme_blocks(language: str) -> list[str]:
    """The lines of the README's fenced blocks opened by ```language (``""``: a bare ```)."""
    lines, inside = [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = line[3:].strip() if inside is None else None
        elif inside == language:
            lines.append(line)
    return lines


def readme_commands(program: str) -> list[list[str]]:
    """Every line of the README's ```bash blocks that calls ``program``, split as a shell
    would, its comment cut and the README's `...` elisions dropped."""
    lines = readme_blocks("bash")
    commands = [[word for word in shlex.split(line, comments=True) if word != "..."] for line in lines]
    return [command for command in commands if command and command[0] == program]


def readme_error_examples() -> list[tuple[list[str], str]]:
    """The README's `$ reverie ...` lines, each with the error line printed under it."""
    lines = readme_blocks("")
    return [(shlex.split(line[2:])[1:], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("$ reverie ")]


def test_readme_shows_commands_and_one_error_example_of_each_kind():
    """The parsers below find what they look for: a README reorganised out of their reach fails here."""
    subcommands = {command[1] for command in readme_commands("reverie")}
    assert {"train", "config", "tasks", "eval", "scores", "plot", "sweep", "bench"} <= subcommands
    assert len(readme_error_examples()) >= 4 and {"demo", "test"} <= {c[1] for c in readme_commands("make")}


@pytest.mark.parametrize("argv", [c[1:] for c in readme_commands("reverie")], ids=shlex.join)
def test_every_readme_command_is_accepted_by_the_cli(argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        pytest.fail(f"the CLI refuses the README's `reverie {shlex.join(argv)}` (exit {stop.code})")
    assert args.command == argv[0]


FAST = [c[1:] for c in readme_commands("reverie") if c[1] in ("config", "tasks") or c[1] == "scores" and "--baseline" in c]


@pytest.mark.parametrize("argv", FAST, ids=shlex.join)
def test_readme_commands_that_finish_in_seconds_run(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("argv, shown", [pytest.param(a, s, id=shlex.join(a)) for a, s in readme_error_examples()])
def test_readme_error_examples_print_the_line_shown(argv, shown, tmp_path, monkeypatch, capsys):
    """`...` in the README's line stands for any text; the command is refused before any work."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as stop:  # an argparse error
        code = stop.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1, err
    assert re.fullmatch(".*".join(map(re.escape, shown.split("..."))), err[0]), (err[0], shown)
    assert not any(tmp_path.iterdir())


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for command in readme_commands("make"):
        assert re.search(rf"^{re.escape(command[-1])}:", makefile, re.M), command


@pytest.mark.slow
def test_demo_trains_and_writes_what_it_prints(tmp_path):
    """`reverie demo` (what `make demo` runs after installing): a real 5,000-step Pong run."""
    logdir = tmp_path / "demo"
    out = subprocess.run([sys.executable, "-m", "reverie", "demo", "--logdir", str(logdir)], capture_output=True,
                         text=True, timeout=1800, check=True).stdout
    for line in ("learning curve:", "world-model losses:", "open-loop prediction:", "checkpoint:", "metrics:"):
        path = out.split(line, 1)[1].split()[0]
        assert Path(path).exists() and Path(path).stat().st_size > 0, (line, path)
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 5000
    losses = [json.loads(line)["train/image_loss"] for line in (logdir / "metrics.jsonl").read_text().splitlines()
              if "train/image_loss" in line]
    assert len(losses) >= 8 and np.mean(losses[-2:]) < losses[0]  # the world model learns
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/reverie demo$", makefile, re.M)
    assert yaml.safe_load((logdir / "config.yaml").read_text())["task"] == "atari_pong"
