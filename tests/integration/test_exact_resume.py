"""Exact resume for every task family: a run split at a step that ends an episode, and at one
inside an episode, ends bit-identical to the run that never stopped (CPU, deterministic=true);
with one env, and with two in worker processes (``run.envs=2``), split where one env has just
ended an episode while the other is inside one, and where both are inside one.

Every checkpoint tensor (networks, optimizers, RNG states, the env's state, the observation,
the policy state) and the loop's counters (steps, episodes, returns, replay bookkeeping) must
be equal, and so must every metric line. The split steps are read from the uninterrupted
run's own episode ends, so the test needs no knowledge of the env's episode lengths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reverie.checkpoint import load_checkpoint

STEPS = 300
COMMON = ["--set", "device=cpu", "--set", "deterministic=true", "--set", "run.prefill=100",
          "--set", "run.log_every=50", "--set", "run.eval_every=0", "--set", "run.checkpoint_every=1000",
          "--set", "run.pretrain=2"]

FAMILIES = [
    pytest.param("gym_CartPole-v1", "gym,debug", [], id="gym-discrete-vector"),
    pytest.param("gym_Pendulum-v1", "gym,debug", ["--set", "env.time_limit=60"], id="gym-continuous-vector",
                 marks=pytest.mark.slow),
    # compile=true (preset cartpole's default): the compiled loops draw their random numbers
    # from the same saved generator, so a resumed compiled run is exact too
    pytest.param("gym_CartPole-v1", "gym,debug", ["--set", "compile=true"], id="gym-discrete-compiled",
                 marks=pytest.mark.slow),
    # 100-frame limit = 25 agent steps at action repeat 4: episode ends inside the run
    pytest.param("atari_pong", "atari,debug", ["--set", "env.time_limit=100"], id="atari", marks=pytest.mark.slow),
    # 60-frame limit = 30 agent steps at action repeat 2
    pytest.param("dmc_walker_walk", "dmc,debug", ["--set", "env.time_limit=60"], id="dmc", marks=pytest.mark.slow),
]


def reverie(*args: str) -> None:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run([sys.executable, "-m", "reverie", *args], capture_output=True, text=True, timeout=900,
                            env=env)
    assert result.returncode == 0, f"reverie {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def metrics(logdir: Path) -> list[dict]:
    wall = {"time", "fps", "updates_per_second"}
    records = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in wall} for r in records]


def flatten(value, prefix: str = "") -> dict:
    """Leaves of nested dicts/lists by path (tensors, numbers, strings)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}/{i}").items()}
    return {prefix: value}


def assert_identical_checkpoints(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.step == cb.step == STEPS
    ta, tb = flatten(ca.tensors), flatten(cb.tensors)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not (torch.equal(ta[k], tb[k]) if isinstance(ta[k], torch.Tensor) else ta[k] == tb[k])]
    assert not differ, f"{len(differ)} of {len(ta)} checkpoint tensors differ, e.g. {differ[:4]}"
    ma, mb = flatten(ca.meta), flatten(cb.meta)
    ma.pop("/loop/wall_seconds"), mb.pop("/loop/wall_seconds")
    assert ma == mb, [k for k in ma if ma.get(k) != mb.get(k)][:5]


def split_steps(logdir: Path) -> tuple[int, int]:
    """A step that ends an episode and one inside an episode, both after prefill (so the
    resumed run trains) and before the end."""
    ends = [r["step"] for r in metrics(logdir) if "episode/length" in r and 120 <= r["step"] < STEPS - 20]
    assert ends, "no episode ended inside the run: shorten the env's episodes"
    inside = next(s for s in range(ends[0] + 2, STEPS) if s not in ends and s - 1 not in ends)
    return ends[0], inside


@pytest.mark.parametrize("task, presets, extra", FAMILIES)
def test_resume_at_an_episode_end_and_inside_one_is_bit_exact(tmp_path, task, presets, extra):
    args = ["--task", task, "--preset", presets, *COMMON, *extra]
    whole = tmp_path / "whole"
    reverie("train", *args, "--logdir", str(whole), "--steps", str(STEPS))
    for name, split in zip(("at_end", "inside"), split_steps(whole)):
        halves = tmp_path / name
        reverie("train", *args, "--logdir", str(halves), "--steps", str(split))
        mid_episode = load_checkpoint(halves).meta["mid_episode"]
        assert mid_episode == (name == "inside"), (name, split)
        reverie("train", "--logdir", str(halves), "--steps", str(STEPS))
        assert metrics(halves) == metrics(whole), f"split at {split} ({name}): metrics differ"
        assert_identical_checkpoints(whole, halves)


FAMILIES_N2 = [
    pytest.param("gym_CartPole-v1", "gym,debug", [], id="gym-discrete-vector"),
    pytest.param("minatar_breakout", "minatar,debug", [], id="minatar"),
    pytest.param("gym_Pendulum-v1", "gym,debug", ["--set", "env.time_limit=60"], id="gym-continuous-vector",
                 marks=pytest.mark.slow),
    pytest.param("atari_pong", "atari,debug", ["--set", "env.time_limit=100"], id="atari", marks=pytest.mark.slow),
    pytest.param("dmc_walker_walk", "dmc,debug", ["--set", "env.time_limit=60"], id="dmc", marks=pytest.mark.slow),
]


def round_splits(logdir: Path) -> tuple[int, int]:
    """With two envs a round is two agent steps (env 0's, then env 1's) and checkpoints fall
    between rounds: a round end right after env 0 ended an episode (where env 1 is inside one
    if the episodes' lengths let it; fixed-length episodes end in the same round), and a round
    end where neither env ended one, both after prefill and before the end."""
    ends = {(r["step"], r["episode/env"]) for r in metrics(logdir) if "episode/length" in r}
    steps = {step for step, _ in ends}
    candidates = [step + 1 for step, env in sorted(ends) if env == 0 and 120 <= step < STEPS - 20]
    assert candidates, "env 0 ended no episode inside the run: shorten the env's episodes"
    at_end = next((s for s in candidates if s not in steps), candidates[0])
    inside = next(s for s in range(at_end + 4, STEPS - 10, 2) if not {s, s - 1} & steps)
    return at_end, inside


@pytest.mark.parametrize("task, presets, extra", FAMILIES_N2)
def test_two_envs_in_workers_resume_bit_exact(tmp_path, task, presets, extra):
    args = ["--task", task, "--preset", presets, *COMMON, *extra, "--set", "run.envs=2", "--set", "env.parallel=process"]
    whole = tmp_path / "whole"
    reverie("train", *args, "--logdir", str(whole), "--steps", str(STEPS))
    ended = {(r["step"], r["episode/env"]) for r in metrics(whole) if "episode/length" in r}
    for name, split in zip(("env0_at_end", "inside"), round_splits(whole)):
        halves = tmp_path / name
        reverie("train", *args, "--logdir", str(halves), "--steps", str(split))
        meta = load_checkpoint(halves).meta
        assert meta["mid_episode"] == (name == "inside"), (name, split)
        assert meta["more"]["1"]["mid_episode"] == ((split, 1) not in ended), (name, split)
        reverie("train", "--logdir", str(halves), "--steps", str(STEPS))
        assert metrics(halves) == metrics(whole), f"split at {split} ({name}): metrics differ"
        assert_identical_checkpoints(whole, halves)
