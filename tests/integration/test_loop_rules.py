"""The training loop's rules that the official loop (``dreamerv2.api.train``) fixes, through the
real ``train``: when learning starts and how many updates it makes, the clock the schedules
read, and the prefill that waits for a sampleable episode."""

from __future__ import annotations

import json
from pathlib import Path

from reverie.agent import Agent
from reverie.behavior.actor_critic import ActorCritic
from reverie.checkpoint import load_checkpoint
from reverie.config import load_config
from reverie.nn.optim import Optimizer
from reverie.replay import Replay
from reverie.run.train import train

BASE = ["task=gym_CartPole-v1", "device=cpu", "run.eval_every=0", "run.log_every=1000", "run.checkpoint_every=1000"]


def spy(monkeypatch, cls, name, record):
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        record(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)


def test_updates_start_as_the_official_loop_and_schedules_read_the_agent_step(tmp_path: Path, monkeypatch):
    """Prefill 100, pretrain 2, train_every 5: two updates when prefill ends (agent step 100),
    one on the first policy step (101) and every 5 after it (106, 111, ...), as the official
    ``Every`` fires on its first call. Every schedule (learning rates, ρ, η) reads the agent
    step at which the policy last acted (the official ``tfstep``), never the update count."""
    calls, schedule_steps = [], []
    spy(monkeypatch, Agent, "train", lambda agent, batch: calls.append((agent.step, agent.updates)))
    spy(monkeypatch, ActorCritic, "losses", lambda ac, wm, start, term, step: schedule_steps.append(("rho, eta", step)))
    spy(monkeypatch, Optimizer, "step", lambda opt, loss, step: schedule_steps.append((opt.name, step)))
    config = load_config(["gym", "debug"], [*BASE, "run.steps=140", "run.prefill=100", "run.pretrain=2",
                                            "run.train_every=5"])
    train(config, tmp_path / "run", quiet=True)
    steps = [step for step, _ in calls]
    assert steps == [100, 100] + list(range(100, 140, 5))  # the agent step before each update's policy step
    assert [updates for _, updates in calls] == list(range(len(calls)))
    expected = [step for step in steps for _ in ("model", "rho, eta", "actor", "critic")]
    assert [step for _, step in schedule_steps] == expected
    assert load_checkpoint(tmp_path / "run", map_location="cpu").meta["loop"]["learn_start"] == 100


def test_prefill_waits_for_a_finished_episode_of_minlen_steps(tmp_path: Path, monkeypatch):
    """With ``replay.ongoing=false`` and ``minlen = L``, acting stays random after ``run.prefill``
    until an episode of at least ``minlen`` agent steps has finished (the official prefill runs
    until an episode ends), and every batch is drawn under those rules."""
    sampled = []
    spy(monkeypatch, Replay, "sample", lambda replay, *args, **kwargs: sampled.append(
        (kwargs, [i for i in replay.sampleable(kwargs["ongoing"], kwargs["minlen"])
                  if replay._store.episodes[i].id in replay._store.running_ids()])))
    config = load_config(["gym", "debug"], [*BASE, "run.steps=400", "run.prefill=16", "run.pretrain=1",
                                            "replay.ongoing=false", "replay.minlen=30", "seed=3"])
    train(config, tmp_path / "run", quiet=True)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ends = [line["step"] for line in lines if line.get("episode/length", 0) >= 30]
    learn_start = load_checkpoint(tmp_path / "run", map_location="cpu").meta["loop"]["learn_start"]
    assert learn_start == max(16, ends[0]) and learn_start > 30  # seed 3: random episodes shorter than 30 first
    assert sampled and all(kwargs == {"clip_start": True, "ongoing": False, "minlen": 30, "cross_episodes": False} and not running
                           for kwargs, running in sampled)
