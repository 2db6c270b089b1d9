"""`reverie train` / `reverie eval` end to end through the real CLI, on the debug preset."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reverie.checkpoint import load_checkpoint
from reverie.cli import main
from reverie.sweep.state import run_is_training

CARTPOLE = ["--task", "gym_CartPole-v1", "--preset", "gym,debug"]
SMALL = ["--set", "device=cpu", "--set", "run.prefill=100", "--set", "run.log_every=100",
         "--set", "run.eval_every=200", "--set", "run.checkpoint_every=200", "--set", "run.pretrain=2"]


def reverie(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def read_metrics(logdir: Path) -> list[dict]:
    return [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_every_output_and_eval_reads_it(tmp_path):
    logdir = tmp_path / "run"
    out = reverie("train", *CARTPOLE, *SMALL, "--logdir", str(logdir), "--steps", "400").stdout
    assert "run finished" in out
    assert (logdir / "config.yaml").exists()
    records = read_metrics(logdir)
    keys = set().union(*records)
    for key in ["step", "frames", "episode/return", "episode/length", "eval/return", "fps",
                "updates_per_second", "train/model_loss", "train/actor_loss", "train/critic_loss"]:
        assert key in keys, key
    assert all(r["frames"] == r["step"] * 1 for r in records)  # gym preset: action repeat 1
    # No update was skipped for a non-finite gradient (the logger drops NaN values, so finite
    # losses alone would not show it).
    skips = [r[f"train/{part}_skipped"] for r in records if "train/model_loss" in r for part in ("model", "actor", "critic")]
    assert skips and set(skips) == {0.0}
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 400
    assert [p.name for p in sorted((logdir / "checkpoints").iterdir())] == ["000000000200", "000000000400"]
    assert any((logdir / "replay").glob("*.npz"))
    assert list(logdir.glob("events.out.tfevents.*"))

    out = reverie("eval", "--logdir", str(logdir), "--episodes", "3").stdout
    lines = [json.loads(x) for x in (logdir / "eval.jsonl").read_text().splitlines()]
    assert [x["episode"] for x in lines] == [0, 1, 2] and all(x["step"] == 400 and x["policy"] == "mode" for x in lines)
    # The summary line gives the episodes' mean ± their sample std, as the recorded studies do.
    returns = [x["return"] for x in lines]
    assert len(set(returns)) > 1  # else any spread would read 0.00 and the check below be void
    assert f"mean return {statistics.mean(returns):.2f} ± {statistics.stdev(returns):.2f} (sample std) over 3 episodes" in out


def test_resume_refuses_model_changes_and_accepts_longer_runs(tmp_path, capsys):
    logdir = tmp_path / "run"
    reverie("train", *CARTPOLE, *SMALL, "--logdir", str(logdir), "--steps", "200")
    refused = reverie("train", "--logdir", str(logdir), "--set", "world_model.rssm.deter=64", check=False)
    assert refused.returncode == 2
    assert "world_model.rssm.deter" in refused.stderr and "Traceback" not in refused.stderr
    # A changed seed, task or env.* setting would change the data: refused too, the run untouched.
    files = {name: (logdir / name).read_bytes() for name in ("config.yaml", "metrics.jsonl", "status.json")}
    for change, key in ((["--seed", "1"], "seed"), (["--task", "gym_Acrobot-v1"], "task"),
                        (["--set", "env.action_repeat=2"], "env.action_repeat"),
                        (["--set", "env.time_limit=50"], "env.time_limit")):
        assert main(["train", "--logdir", str(logdir), *change]) == 2, change
        err = capsys.readouterr().err
        assert err.startswith("reverie: error:") and key in err and "differ" in err, (change, err)
    assert {name: (logdir / name).read_bytes() for name in files} == files
    reverie("train", "--logdir", str(logdir), "--steps", "300")
    assert json.loads((logdir / "status.json").read_text())["step"] == 300


def test_the_python_api_refuses_the_resumes_the_cli_refuses(tmp_path):
    # `train()` itself refuses (the CLI relies on it): a changed model key or seed, before it
    # touches the run directory.
    from reverie.config import load_config
    from reverie.errors import CheckpointError
    from reverie.run.train import train

    overrides = ["task=gym_CartPole-v1", "device=cpu", "run.prefill=100", "run.pretrain=1", "run.eval_every=0",
                 "run.log_every=100", "run.checkpoint_every=120", "run.steps=120"]
    logdir = tmp_path / "run"
    train(load_config(["gym", "debug"], overrides), logdir, quiet=True)
    files = {path: path.read_bytes() for path in sorted(logdir.rglob("*")) if path.is_file()}
    for change, key in ((["world_model.rssm.deter=64"], "world_model.rssm.deter"), (["seed=1"], "seed"),
                        (["env.time_limit=50"], "env.time_limit")):
        with pytest.raises(CheckpointError, match=rf"^{logdir} holds a run whose model/data settings differ from "
                                                  rf"this command's \({key}\); resuming would change the model\."):
            train(load_config(["gym", "debug"], [*overrides, *change, "run.steps=200"]), logdir, quiet=True)
    assert {path: path.read_bytes() for path in sorted(logdir.rglob("*")) if path.is_file()} == files


def test_the_python_api_holds_the_run_directory_only_while_it_trains(tmp_path):
    # `train()` takes the run directory's lock before it reads the run and gives it back when it
    # returns; a holder in this process stands in for a second process (the CLI twin, with two
    # real processes: test_kill_minus_9_then_resume_continues_from_last_checkpoint).
    from reverie.config import load_config
    from reverie.errors import RunError
    from reverie.run.train import train
    from reverie.utils import Flock

    overrides = ["task=gym_CartPole-v1", "device=cpu", "run.prefill=100", "run.pretrain=1", "run.eval_every=0",
                 "run.log_every=100", "run.checkpoint_every=120"]
    logdir = tmp_path / "run"
    train(load_config(["gym", "debug"], [*overrides, "run.steps=120"]), logdir, quiet=True)
    with Flock(logdir) as other:
        assert other.acquire()  # given back when train() returned
        files = {path: path.read_bytes() for path in sorted(logdir.rglob("*")) if path.is_file()}
        with pytest.raises(RunError, match=rf"^another process is training {logdir} now .*resume with: "
                                           rf"reverie train --logdir {logdir}; or give a new --logdir$"):
            train(load_config(["gym", "debug"], [*overrides, "run.steps=240"]), logdir, quiet=True)
        assert {path: path.read_bytes() for path in sorted(logdir.rglob("*")) if path.is_file()} == files
    train(load_config(["gym", "debug"], [*overrides, "run.steps=240"]), logdir, quiet=True)
    assert json.loads((logdir / "status.json").read_text())["step"] == 240


def _comparable(records: list[dict]) -> list[dict]:
    wall = {"time", "fps", "updates_per_second"}
    return [{k: v for k, v in r.items() if k not in wall} for r in records]


def test_resume_is_exact(tmp_path):
    """N steps in one go equal N/2 steps + resume for N/2 (same metrics, same weights)."""
    args = [*CARTPOLE, *SMALL, "--set", "deterministic=true"]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    reverie("train", *args, "--logdir", str(whole), "--steps", "500")
    reverie("train", *args, "--logdir", str(halves), "--steps", "250")
    reverie("train", *args, "--logdir", str(halves), "--steps", "500")
    assert _comparable(read_metrics(whole)) == _comparable(read_metrics(halves))
    a = load_checkpoint(whole).tensors["agent"]
    b = load_checkpoint(halves).tensors["agent"]
    for name in ["world_model", "actor", "critic", "slow_critic"]:
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"


def _long_train(logdir: Path) -> list[str]:
    """A CartPole run long enough to be interrupted, checkpointing every 100 steps."""
    return [sys.executable, "-m", "reverie", "train", *CARTPOLE, *SMALL, "--logdir", str(logdir),
            "--steps", "3000", "--set", "run.checkpoint_every=100"]


def _signal_after_first_checkpoint(logdir: Path, sig: int, exit_within: float = 120,
                                   **popen_kwargs) -> tuple[int, str]:
    """Start `_long_train`, send `sig` once its first checkpoint is complete and give it `exit_within`
    seconds to exit; its exit code and stderr."""
    proc = subprocess.Popen(_long_train(logdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **popen_kwargs)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((logdir / "checkpoints").glob("*/COMPLETE")):
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=exit_within)
    finally:
        proc.kill()
    return proc.returncode, err


def test_kill_minus_9_then_resume_continues_from_last_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.Popen(_long_train(logdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((logdir / "checkpoints").glob("*/COMPLETE"))) < 2:
        time.sleep(0.2)
    # A second process on the directory while the first trains it (a run started by hand beside
    # a sweep's): one line, and the live run is not marked stopped or failed. The resume below,
    # after SIGKILL, shows that the lock went with the killed process.
    second = reverie("train", "--logdir", str(logdir), check=False)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert f"another process is training {logdir} now" in second.stderr.strip().splitlines()[-1]
    assert proc.poll() is None and json.loads((logdir / "status.json").read_text())["state"] == "running"
    assert run_is_training(logdir)  # what `reverie sweep --status` reads
    time.sleep(0.7)  # kill somewhere between checkpoints, possibly mid-write
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not run_is_training(logdir)
    killed_at = load_checkpoint(logdir).step
    assert killed_at >= 200
    reverie("train", "--logdir", str(logdir), "--steps", str(killed_at + 200))
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == killed_at + 200
    steps = [r["step"] for r in read_metrics(logdir)]
    assert steps == sorted(steps)  # lines after the checkpoint were dropped, then re-logged
    # Pruned to the newest run.keep_checkpoints (3) complete ones, every 100 steps.
    complete = sorted(int(p.parent.name) for p in (logdir / "checkpoints").glob("*/COMPLETE"))
    assert complete == [killed_at, killed_at + 100, killed_at + 200]
    assert load_checkpoint(logdir).step == killed_at + 200


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_by_sigterm_or_ctrl_c_says_stopped_and_resumes(tmp_path, stop):
    # `kill`, a scheduler or a container stop send SIGTERM, Ctrl-C SIGINT: either way status.json
    # must not stay "running"; it says where the run stopped and how it resumes.
    logdir = tmp_path / "run"
    # SIGINT as a terminal delivers it: a shell's background job starts with SIGINT ignored.
    returncode, err = _signal_after_first_checkpoint(
        logdir, stop, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert returncode == 128 + stop and err.strip().splitlines()[-1].startswith("reverie: ")
    assert "Traceback" not in err, err
    status, checkpoint = json.loads((logdir / "status.json").read_text()), load_checkpoint(logdir).step
    assert status["state"] == "stopped" and status["step"] >= status["resume_step"] == checkpoint >= 100
    assert status["resume"] == f"reverie train --logdir {logdir}" and "error" not in status
    reverie(*status["resume"].split()[1:], "--steps", str(checkpoint + 100))  # the command it names
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == checkpoint + 100 and "resume" not in status


def test_a_crash_in_native_code_leaves_the_python_stack_in_stderr(tmp_path):
    # A segfault (seen once in a DMC study run, in libc) must leave more than "exit -11": the
    # stack of every thread goes to stderr, which a sweep writes into the run's train.log.
    logdir = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONFAULTHANDLER"}
    # SIGSEGV: what a bad pointer in native code raises.
    returncode, err = _signal_after_first_checkpoint(logdir, signal.SIGSEGV, exit_within=60, env=env)
    assert returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in err, err
    assert "reverie" + os.sep + "run" + os.sep in err, err  # a frame of the training loop


def test_bad_task_is_a_clear_error(tmp_path):
    result = reverie("train", "--task", "atari_pongg", "--preset", "atari,debug", "--logdir", str(tmp_path / "x"),
                     check=False)
    assert result.returncode == 2
    assert "atari_pong" in result.stderr and "Traceback" not in result.stderr


PONG = ["--task", "atari_pong", "--preset", "atari,debug", "--set", "device=cpu", "--set", "run.prefill=150",
        "--set", "run.log_every=150", "--set", "run.eval_every=0", "--set", "world_model.encoder.depth=4",
        "--set", "env.time_limit=240"]  # 60-step episodes (240 frames): short evaluation episodes


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("pong") / "run"
    reverie("train", *PONG, "--logdir", str(logdir), "--steps", "300")
    return logdir


def _replay_frames(logdir: Path) -> np.ndarray:
    """Every stored frame of the run, the replay's chunk files in step order: uint8 [N, 64, 64, 1]."""
    chunks = sorted((logdir / "replay").glob("*.npz"))
    return np.concatenate([np.load(chunk)["image"] for chunk in chunks])


def test_pixel_task_writes_open_loop_video(pong_run):
    """Rows truth, model, error; columns 4 sequences; one frame per step of a replay sequence.
    The truth row shows real replay frames, and the error row is (model − truth + 1) / 2."""
    import imageio.v2 as imageio

    videos = sorted(p.name for p in (pong_run / "videos").glob("openl_*.gif"))
    assert videos == ["openl_000000000150.gif", "openl_000000000300.gif"]
    frames = np.stack(imageio.mimread(pong_run / "videos" / videos[-1]))[..., :3]
    assert frames.shape == (16, 3 * 64, 4 * 64, 3)  # debug: replay.length 16, batch 4
    assert (frames == frames[..., :1]).all()  # grayscale, repeated into RGB
    gray = frames[..., 0].astype(np.int16)
    truth, model, error = gray[:, :64], gray[:, 64:128], gray[:, 128:]
    np.testing.assert_allclose(error, (model - truth + 255) / 2, atol=1.5)  # rounding of each row
    assert model.std() > 0 and not np.array_equal(model, truth)
    stored = _replay_frames(pong_run)[..., 0]
    for column in range(4):
        sequence = truth[:, :, column * 64:(column + 1) * 64]
        assert any(np.array_equal(stored[start:start + 16], sequence) for start in range(len(stored) - 15)), column


def test_eval_video_of_a_pixel_run(pong_run):
    import imageio.v2 as imageio
    from PIL import Image, ImageSequence

    out = reverie("eval", "--logdir", str(pong_run), "--episodes", "1", "--video").stdout
    video = pong_run / "videos" / "eval_000000000300" / "eval_000.gif"
    assert f"videos in {video.parent}" in out
    (record,) = [json.loads(line) for line in (pong_run / "eval.jsonl").read_text().splitlines()]
    assert record["step"] == 300 and record["length"] == 60  # the 240-frame limit
    frames = imageio.mimread(video)
    assert frames[0].shape[:2] == (210, 160) and np.std(frames[-1]) > 0  # the full Atari screen
    # The first observation and one frame per step at 30 fps. The GIF writer merges identical
    # consecutive frames into one with their summed duration, rounded down to 10 ms (less
    # than half a frame), so each frame's duration tells how many steps it shows.
    durations = [frame.info["duration"] for frame in ImageSequence.Iterator(Image.open(video))]
    assert sum(round(d * 30 / 1000) for d in durations) == record["length"] + 1
