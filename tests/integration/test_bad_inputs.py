"""Every bad input through the real CLI: a non-zero exit, one clear line on stderr, no
traceback, and nothing lost (issue #19).

Each case runs ``python -m reverie ...`` in a subprocess. Cases that name a new ``--logdir``
check that it was never created (refused before any work); cases on an existing run
directory check that it is byte-for-byte unchanged. Faults that need code in the process
(an env that returns NaN, a write that fails with ENOSPC) run the same ``reverie.cli.main``
after a short prelude, in a subprocess too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from reverie.checkpoint import list_checkpoints, load_checkpoint

HERE = Path(__file__).parent
CARTPOLE = ["--task", "gym_CartPole-v1", "--preset", "gym,debug", "--set", "device=cpu"]
SMALL = ["--set", "run.prefill=100", "--set", "run.log_every=100", "--set", "run.eval_every=0",
         "--set", "run.checkpoint_every=100", "--set", "run.pretrain=2"]


def reverie(*args: str, prelude: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m reverie ARGS``, or with ``prelude`` the same ``main`` after that code."""
    if prelude:
        code = f"import sys\nsys.path.insert(0, {str(HERE)!r})\n{prelude}\nfrom reverie.cli import main\nsys.exit(main())"
        command = [sys.executable, "-c", code, *args]
    else:
        command = [sys.executable, "-m", "reverie", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Assert the contract of a refused command and return its error line."""
    assert result.returncode != 0, f"exit 0:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("reverie"), lines[0]
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file (and a marker for every folder) under ``root``."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 200-step CartPole run with checkpoints at 100 and 200 and a replay."""
    logdir = tmp_path_factory.mktemp("bad_inputs") / "run"
    result = reverie("train", *CARTPOLE, *SMALL, "--logdir", str(logdir), "--steps", "200")
    assert result.returncode == 0, result.stderr
    return logdir


# ------------------------------------------------------------------------------------ files
def _corrupt_config(run: Path) -> None:
    (run / "config.yaml").write_text("replay: {batch: [unclosed\n")


def _empty_config(run: Path) -> None:
    (run / "config.yaml").write_text("")


def _bad_value_in_config(run: Path) -> None:
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("batch: 4\n", "batch: -5\n"))


def _corrupt_replay_chunk(run: Path) -> None:
    chunk = sorted((run / "replay").glob("ep*.npz"))[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64
    chunk.write_bytes(bytes(data))


def _corrupt_every_checkpoint(run: Path) -> None:
    for path in list_checkpoints(run):
        agent = path / "agent.pt"
        agent.write_bytes(agent.read_bytes()[:1000])


def _csv(text: str):
    def write(run: Path) -> None:
        (run / "scores.csv").write_text(text)
    return write


def _file(name: str, text: str):
    def write(run: Path) -> None:
        (run / name).write_text(text)
    return write


def _nothing(run: Path) -> None:
    pass


# (id, argv with {run} = a copy of the finished run and {new} = a folder that must stay
# absent, set-up of the copy, words the error line must contain)
CASES = [
    # config values (the table first)
    ("train_every_0", ["train", *CARTPOLE, "--set", "run.train_every=0", "--logdir", "{new}"], _nothing,
     ["'run.train_every' = 0", ">= 1"]),
    ("config_batch_negative", ["config", "--set", "replay.batch=-5"], _nothing, ["'replay.batch' = -5", "50"]),
    ("train_batch_negative", ["train", *CARTPOLE, "--set", "replay.batch=-5", "--logdir", "{new}"], _nothing,
     ["'replay.batch' = -5"]),
    ("classes_negative", ["config", "--set", "world_model.rssm.classes=-1"], _nothing, ["'world_model.rssm.classes'"]),
    ("size_one_value", ["config", "--set", "env.size=[64]"], _nothing, ["'env.size' = [64]", "2 values"]),
    ("discount_above_1", ["train", *CARTPOLE, "--set", "behavior.discount=1.5", "--logdir", "{new}"], _nothing,
     ["'behavior.discount' = 1.5", "(0, 1]", "0.995"]),
    ("kl_balance_2", ["config", "--set", "world_model.kl.balance=2"], _nothing, ["'world_model.kl.balance'", "[0, 1]"]),
    ("lr_zero", ["config", "--set", "behavior.actor_opt.lr=0"], _nothing, ["'behavior.actor_opt.lr'", "> 0"]),
    ("lambda_above_1", ["config", "--set", "behavior.return_lambda=1.5"], _nothing, ["'behavior.return_lambda'"]),
    ("expl_noise_above_1", ["config", "--set", "behavior.expl_noise=1.5"], _nothing, ["'behavior.expl_noise'", "[0, 1]"]),
    # MinAtar (issue #17): an unknown game, and a preset with frame skip. Its observations are
    # flat 0/1 vectors (with their grid shape), so no preset's image encoder is asked to fit a
    # 10×10 grid; only an image task shrunk to one (env.size) is, and the grid nets refuse
    # observations without a grid (a plain vector, an image).
    ("minatar_unknown_game", ["train", "--task", "minatar_pong", "--preset", "minatar", "--logdir", "{new}"],
     _nothing, ["unknown MinAtar game 'pong'", "minatar_breakout"]),
    ("minatar_frame_skip", ["train", "--task", "minatar_breakout", "--preset", "atari", "--logdir", "{new}"],
     _nothing, ["env.action_repeat=1", "--preset minatar"]),
    ("grid_encoder_on_a_vector", ["train", *CARTPOLE, "--set", "world_model.encoder.kind=grid", "--logdir", "{new}"],
     _nothing, ["world_model.encoder.kind=grid needs a grid observation", "--preset minatar",
                "gym_CartPole-v1 gives vector[4]"]),
    ("grid_decoder_on_an_image", ["train", "--task", "atari_pong", "--preset", "atari,debug", "--set", "device=cpu",
                                  "--set", "world_model.decoder.kind=grid", "--logdir", "{new}"], _nothing,
     ["world_model.decoder.kind=grid needs a grid observation", "--preset minatar", "atari_pong gives image[64, 64, 1]"]),
    ("cnn_on_a_10x10_grid", ["train", "--task", "atari_pong", "--preset", "atari,debug", "--set", "device=cpu",
                             "--set", "env.size=[10,10]", "--logdir", "{new}"], _nothing,
     ["image 10×10", "env.size=[64, 64]", "--preset atari", "--preset minatar", "world_model.encoder.kind=grid"]),
    # DMC on a CPU (issue #35): dmc_small resizes dmc, on dmc_ tasks only; a camera the task lacks
    ("dmc_small_alone", ["config", "--preset", "dmc_small"], _nothing, ["'dmc_small'", "--preset dmc,dmc_small"]),
    ("dmc_small_on_atari", ["train", "--task", "atari_pong", "--preset", "dmc,dmc_small", "--logdir", "{new}"],
     _nothing, ["'dmc_small' is for dmc_ tasks", "'atari_pong'"]),
    ("dmc_camera_missing", ["train", "--task", "dmc_cartpole_swingup", "--preset", "dmc,debug", "--set", "device=cpu",
                            "--set", "env.camera=5", "--logdir", "{new}"], _nothing, ["env.camera = 5", "cameras 0–1"]),
    ("sticky_negative", ["config", "--set", "env.sticky_actions=-0.1"], _nothing, ["'env.sticky_actions'"]),
    ("lr_infinite", ["config", "--set", "world_model.opt.lr=.inf"], _nothing, ["finite"]),
    ("length_above_capacity", ["config", "--set", "replay.capacity=10", "--set", "run.prefill=100"], _nothing,
     ["replay.length <= replay.capacity"]),
    ("prefill_below_length", ["train", *CARTPOLE, "--set", "run.prefill=5", "--logdir", "{new}"], _nothing,
     ["run.prefill >= replay.length"]),
    ("schedule_negative_end", ["config", "--set", "behavior.entropy=linear(1e-3,-1e-3,100)"], _nothing,
     ["'behavior.entropy'", ">= 0"]),
    ("schedule_malformed", ["config", "--set", "world_model.opt.lr=cosine(1,2)"], _nothing, ["malformed schedule"]),
    ("wrong_type", ["config", "--set", "replay.batch=many"], _nothing, ["'replay.batch'", "integer"]),
    ("unknown_key", ["config", "--set", "replay.bach=4"], _nothing, ["did you mean 'replay.batch'"]),
    ("override_without_value", ["config", "--set", "replay.batch"], _nothing, ["key=value"]),
    ("unknown_preset", ["config", "--preset", "atari,debg"], _nothing, ["unknown preset 'debg'", "'debug'"]),
    ("literal_choice", ["config", "--set", "device=tpu"], _nothing, ["'device'", "auto, cpu, cuda"]),
    ("image_size_for_decoder", ["train", "--task", "atari_pong", "--preset", "atari,debug", "--set", "device=cpu",
                                "--set", "env.size=[32,32]", "--logdir", "{new}"], _nothing, ["env.size"]),
    ("explain_unknown_key", ["config", "--explain", "kl.balance"], _nothing, ["'world_model.kl.balance'"]),
    # CLI arguments
    ("steps_negative", ["train", *CARTPOLE, "--steps", "-1", "--logdir", "{new}"], _nothing, ["--steps", ">= 1"]),
    ("steps_fraction", ["train", *CARTPOLE, "--steps", "1.5", "--logdir", "{new}"], _nothing, ["--steps"]),
    ("steps_text", ["train", *CARTPOLE, "--steps", "many", "--logdir", "{new}"], _nothing, ["not a number"]),
    ("seed_negative", ["train", *CARTPOLE, "--seed", "-2", "--logdir", "{new}"], _nothing, ["--seed"]),
    ("resume_with_steps_negative", ["train", "--logdir", "{run}", "--steps", "-5"], _nothing, ["--steps"]),
    ("resume_with_bad_value", ["train", "--logdir", "{run}", "--set", "run.train_every=0"], _nothing,
     ["'run.train_every' = 0"]),
    ("envs_zero", ["train", *CARTPOLE, "--set", "run.envs=0", "--logdir", "{new}"], _nothing, ["'run.envs' = 0"]),
    ("parallel_unknown", ["config", "--set", "env.parallel=thread"], _nothing, ["'env.parallel'", "process, none"]),
    ("resume_changing_envs", ["train", "--logdir", "{run}", "--set", "run.envs=2"], _nothing, ["run.envs"]),
    ("resume_changing_model", ["train", "--logdir", "{run}", "--set", "world_model.rssm.deter=64"], _nothing,
     ["world_model.rssm.deter", "new --logdir"]),
    ("eval_episodes_zero", ["eval", "--logdir", "{run}", "--episodes", "0"], _nothing, ["--episodes"]),
    ("bench_updates_zero", ["bench", "--preset", "gym,debug", "--updates", "0"], _nothing, ["--updates"]),
    ("scores_last_zero", ["scores", "{run}", "--last", "0"], _nothing, ["--last"]),
    ("sweep_seeds_text", ["sweep", "--tasks", "gym_CartPole-v1", "--seeds", "a,b", "--logdir", "{new}"], _nothing,
     ["--seeds"]),
    ("unknown_command", ["trian"], _nothing, ["invalid choice: 'trian'"]),
    ("unknown_option", ["train", "--stpes", "10"], _nothing, ["unrecognized arguments"]),
    # tasks and spaces
    ("unknown_atari_task", ["train", "--task", "atari_pongg", "--preset", "atari,debug", "--logdir", "{new}"],
     _nothing, ["atari_pong"]),
    ("unknown_gym_task", ["train", "--task", "gym_CartPol-v1", "--preset", "gym,debug", "--logdir", "{new}"],
     _nothing, ["gym_CartPole-v1"]),
    ("unsupported_space", ["train", "--task", "gym_Blackjack-v1", "--preset", "gym,debug", "--logdir", "{new}"],
     _nothing, ["unsupported observation space"]),
    ("continuous_actor_on_discrete", ["train", *CARTPOLE, "--set", "behavior.actor.dist=trunc_normal",
                                      "--logdir", "{new}"], _nothing, ["trunc_normal", "Discrete"]),
    # files
    ("corrupt_config_yaml", ["train", "--logdir", "{run}", "--steps", "300"], _corrupt_config,
     ["cannot read config", "config.yaml"]),
    ("empty_config_yaml", ["train", "--logdir", "{run}", "--steps", "300"], _empty_config, ["not a mapping"]),
    ("bad_value_in_config_yaml", ["train", "--logdir", "{run}", "--steps", "300"], _bad_value_in_config,
     ["config.yaml", "'replay.batch' = -5"]),
    ("eval_corrupt_config_yaml", ["eval", "--logdir", "{run}"], _corrupt_config, ["cannot read config"]),
    ("corrupt_replay_chunk", ["train", "--logdir", "{run}", "--steps", "300"], _corrupt_replay_chunk,
     ["replay chunk", "is corrupt", ".corrupt"]),
    ("corrupt_checkpoints", ["train", "--logdir", "{run}", "--steps", "300"], _corrupt_every_checkpoint,
     ["none of the 2 checkpoints"]),
    ("eval_corrupt_checkpoints", ["eval", "--logdir", "{run}"], _corrupt_every_checkpoint,
     ["none of the 2 checkpoints"]),
    ("eval_not_a_run", ["eval", "--logdir", "{new}"], _nothing, ["not a run directory"]),
    ("scores_csv_wrong_columns", ["scores", "--csv", "{run}/scores.csv"], _csv("name,points\npong,3\n"),
     ["'game' and 'score'"]),
    ("scores_csv_not_a_number", ["scores", "--csv", "{run}/scores.csv"], _csv("game,score\npong,high\n"),
     ["not a number"]),
    ("scores_csv_unknown_game", ["scores", "--csv", "{run}/scores.csv"], _csv("game,score\npongg,3\n"), ["pong"]),
    ("scores_csv_missing", ["scores", "--csv", "{new}/scores.csv"], _nothing, ["no such file"]),
    ("bench_json_empty", ["bench", "--preset", "gym,debug", "--updates", "1", "--json", "{run}/bench.json"],
     _file("bench.json", ""), ["--json", "(empty)", "left unchanged"]),
    ("bench_json_not_results", ["bench", "--preset", "gym,debug", "--updates", "1", "--json", "{run}/bench.json"],
     _file("bench.json", '{"other": 1}'), ["--json", "runs"]),
    ("plot_out_suffix", ["plot", "{run}", "--out", "{run}/curves.jpg"], _nothing, [".png or .svg"]),
    ("plot_out_under_a_file", ["plot", "{run}", "--out", "{run}/config.yaml/curves.png"], _nothing,
     ["config.yaml"]),
    # file-system faults found before any work
    ("logdir_is_a_file", ["train", *CARTPOLE, "--logdir", "{run}/config.yaml"], _nothing, ["is a file"]),
    ("logdir_under_a_file", ["train", *CARTPOLE, "--logdir", "{run}/config.yaml/sub"], _nothing,
     ["cannot be created", "is a file"]),
    ("logdir_cannot_be_created", ["train", *CARTPOLE, "--logdir", "/proc/reverie-run"], _nothing,
     ["cannot be created"]),
    ("logdir_not_writable", ["train", *CARTPOLE, "--logdir", "/proc"], _nothing, ["cannot be written"]),
]


@pytest.mark.parametrize("argv, setup, words", [pytest.param(a, s, w, id=i) for i, a, s, w in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(tmp_path, finished_run, argv, setup, words):
    run, new = tmp_path / "run", tmp_path / "new"
    shutil.copytree(finished_run, run)
    setup(run)
    before = tree_digest(run)
    result = reverie(*[arg.replace("{run}", str(run)).replace("{new}", str(new)) for arg in argv], cwd=tmp_path)
    line = one_error_line(result)
    for word in words:
        assert word in line, f"{word!r} not in: {line}"
    assert tree_digest(run) == before, "the existing run directory changed"
    assert not new.exists(), "a refused command created its --logdir"


def test_the_suite_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


# ------------------------------------------------------------------ non-finite env values
class NonFiniteEnv(gymnasium.Env):
    """A 3-dim vector env that returns a NaN/inf reward or observation at its 5th step."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, where: str = "reward", value: float = float("nan"), render_mode: str | None = None):
        self.where, self.value, self.t, self.render_mode = where, value, 0, render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(3, 0.1, np.float32), 1.0
        if self.t == 5:
            if self.where == "reward":
                reward = self.value
            else:
                obs[1] = self.value
        return obs, reward, False, self.t >= 50, {}


def register_non_finite_envs() -> None:
    gymnasium.register("ReverieNaNReward-v0", entry_point=NonFiniteEnv, kwargs={"where": "reward"})
    gymnasium.register("ReverieInfObservation-v0", entry_point=NonFiniteEnv,
                       kwargs={"where": "obs", "value": float("inf")})


@pytest.mark.parametrize("task, words", [("gym_ReverieNaNReward-v0", ["non-finite reward", "nan"]),
                                         ("gym_ReverieInfObservation-v0", ["non-finite vector", "inf"])])
def test_an_env_returning_nan_or_inf_is_refused_naming_it(tmp_path, task, words):
    logdir = tmp_path / "run"
    result = reverie("train", "--task", task, "--preset", "gym,debug", "--set", "device=cpu", "--logdir", str(logdir),
                     "--steps", "200", prelude="import test_bad_inputs; test_bad_inputs.register_non_finite_envs()")
    line = one_error_line(result)
    assert task in line and "at step 5 of an episode" in line and all(word in line for word in words), line
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "failed" and task in status["error"] and status["resume_step"] == 0, status
    assert not list((logdir / "replay").glob("*.npz")) or all(
        np.all(np.isfinite(np.load(path)["reward"])) for path in (logdir / "replay").glob("*.npz"))


def test_dmc_without_a_working_egl_names_the_backend_and_the_packages(tmp_path):
    """MuJoCo that cannot make an EGL context (no libEGL, no GPU driver): the one line names
    MUJOCO_GL=egl and the apt packages. The failure is injected where dm-control renders."""
    prelude = ("import dm_control.mujoco\n"
               "def render(*args, **kwargs):\n"
               "    raise RuntimeError('Cannot initialize a EGL device display.')\n"
               "dm_control.mujoco.Physics.render = render")
    result = reverie("train", "--task", "dmc_cartpole_swingup", "--preset", "dmc,debug", "--set", "device=cpu",
                     "--logdir", str(tmp_path / "run"), prelude=f"import os\nos.environ['MUJOCO_GL'] = 'egl'\n{prelude}")
    line = one_error_line(result)
    assert "MUJOCO_GL=egl" in line and "apt-get install libegl1" in line and "EGL device" in line, line


# ------------------------------------------------------------------------ faults mid-run
FAULTS = {
    # a full disk while the checkpoint of step 300 is written
    "checkpoint_enospc": ("reverie.checkpoint", "atomic_write_bytes", "'.tmp-300-' in str(path)", errno.ENOSPC),
    # an I/O error on the first replay chunk that starts at step 250 or later
    "replay_eio": ("reverie.replay.disk", "write_npz", "int(path.name.split('-')[2]) >= 250", errno.EIO),
}


def fault_prelude(module: str, name: str, condition: str, code: int) -> str:
    """Code that makes ``module.name(path, ...)`` raise ``OSError(code)`` where ``condition`` holds."""
    return (f"import os, pathlib, {module} as target\n"
            f"real = target.{name}\n"
            f"def failing(path, *args):\n"
            f"    path = pathlib.Path(path)\n"
            f"    if {condition}:\n"
            f"        raise OSError({code}, os.strerror({code}), str(path))\n"
            f"    return real(path, *args)\n"
            f"target.{name} = failing\n")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_mid_run_stops_in_one_line_and_the_resume_is_exact(tmp_path, fault):
    args = [*CARTPOLE, *SMALL, "--set", "deterministic=true"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert reverie("train", *args, "--logdir", str(whole), "--steps", "400").returncode == 0
    result = reverie("train", *args, "--logdir", str(broken), "--steps", "400", prelude=fault_prelude(*FAULTS[fault]))
    line = one_error_line(result)
    last = load_checkpoint(broken).step
    assert last in (200, 300) and f"the last complete checkpoint is step {last}" in line, line
    assert f"resume with: reverie train --logdir {broken}" in line and os.strerror(FAULTS[fault][3]) in line
    assert not list((broken / "checkpoints").glob(".tmp-*")), "a partial checkpoint was left behind"
    status = json.loads((broken / "status.json").read_text())
    assert status["state"] == "failed" and status["resume_step"] == last, status
    assert os.strerror(FAULTS[fault][3]) in status["error"] and status["resume"] == f"reverie train --logdir {broken}"
    assert reverie("train", "--logdir", str(broken)).returncode == 0  # the saved config: --steps 400
    assert _comparable(whole) == _comparable(broken)
    assert_same_checkpoint(whole, broken)


def _comparable(logdir: Path) -> list[dict]:
    wall = {"time", "fps", "updates_per_second"}
    records = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in wall} for r in records]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Every tensor of the newest checkpoints equal; loop counters and episode totals equal."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.step == cb.step
    flat_a, flat_b = _flatten(ca.tensors), _flatten(cb.tensors)
    assert flat_a.keys() == flat_b.keys()
    differ = [key for key in flat_a if not torch.equal(flat_a[key], flat_b[key])]
    assert not differ, f"{len(differ)} of {len(flat_a)} tensors differ, e.g. {differ[:5]}"
    for key in ("episodes", "step", "last_return"):
        assert ca.meta["loop"][key] == cb.meta["loop"][key], key
    assert ca.meta["episode"] == cb.meta["episode"] and ca.meta["replay"] == cb.meta["replay"]


def _flatten(value, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}/{i}").items()}
    return {prefix: torch.tensor(float(value))} if isinstance(value, (int, float)) else {}


def _can_mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(path)], check=True)
    return ok


@pytest.mark.slow
def test_a_real_full_disk_stops_in_one_line_and_resumes_exactly(tmp_path):
    """On a 1 MB tmpfs (root only): the run stops at a full disk; after the disk grows, the
    resume reaches the same weights and metrics as a run that never stopped."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("needs root and tmpfs mounts")
    args = [*CARTPOLE, *SMALL, "--set", "deterministic=true", "--set", "run.keep_checkpoints=1"]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        result = reverie("train", *args, "--logdir", str(disk / "run"), "--steps", "1500")
        line = one_error_line(result)
        assert "No space left on device" in line and "reverie train --logdir" in line, line
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        assert reverie("train", "--logdir", str(disk / "run")).returncode == 0
        whole = tmp_path / "whole"
        assert reverie("train", *args, "--logdir", str(whole), "--steps", "1500").returncode == 0
        assert _comparable(whole) == _comparable(disk / "run")
        assert_same_checkpoint(whole, disk / "run")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
