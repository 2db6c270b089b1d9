"""The training loop through the real producers (env → Driver → Replay → Agent.train): what
the world model is actually fed, not what a hand-built batch says it is fed."""

from pathlib import Path

import torch

from reverie.checkpoint import load_checkpoint
from reverie.config import load_config
from reverie.run.train import train
from reverie.world_model.rssm import RSSM


def spy_on_observe(monkeypatch) -> list:
    """``(is_first, state)`` of every ``RSSM.observe`` call from now on."""
    calls = []
    observe = RSSM.observe

    def spy(self, embed, action, is_first, state=None, **kwargs):
        calls.append((is_first.detach().clone(), None if state is None else {k: v.clone() for k, v in state.items()}))
        return observe(self, embed, action, is_first, state, **kwargs)

    monkeypatch.setattr(RSSM, "observe", spy)
    return calls


def assert_every_training_row_starts_from_zero(calls: list, batch: int, length: int, at_least: int) -> None:
    """Each training row starts from the zero state: either no state is passed (observe starts
    from `initial`), or the first step is marked is_first, which resets it."""
    training = [(f, s) for f, s in calls if f.shape == (batch, length)]
    assert len(training) >= at_least
    for is_first, state in training:
        assert is_first[:, 0].bool().all()
        assert state is None or all(torch.count_nonzero(v) == 0 for v in state.values())


def test_every_training_sequence_starts_from_the_zero_state(tmp_path: Path, monkeypatch):
    # Spy on RSSM.observe during a real `train` run: every training batch comes from the real
    # Replay. Before the fix the loop passed the previous batch's last posterior and the replay
    # never set is_first at a sequence start, so rows started from an unrelated sequence's state.
    calls = spy_on_observe(monkeypatch)
    config = load_config(["gym", "debug"], ["task=gym_CartPole-v1", "device=cpu", "run.steps=300", "run.prefill=100",
                                            "run.pretrain=2", "run.train_every=20", "run.eval_every=0",
                                            "run.log_every=1000", "run.checkpoint_every=1000"])
    train(config, tmp_path / "run", quiet=True)
    assert_every_training_row_starts_from_zero(calls, config.replay.batch, config.replay.length, at_least=10)
    # The batches really come from mid-episode starts (CartPole episodes are longer than L
    # once the agent learns a little; early on at least some are).
    training = [f for f, _ in calls if f.shape == (config.replay.batch, config.replay.length)]
    assert any(not f[:, 1:].bool().any(1).all() for f in training)


def test_a_resumed_run_starts_from_the_zero_state_too(tmp_path: Path, monkeypatch):
    # The old loop also checkpointed that posterior (`train_state`) and a resumed run started its
    # first batch from it. Nothing of training is carried now, through a real checkpoint either.
    overrides = ["task=gym_CartPole-v1", "device=cpu", "run.prefill=100", "run.pretrain=1", "run.eval_every=0",
                 "run.checkpoint_every=150"]
    train(load_config(["gym", "debug"], [*overrides, "run.steps=150"]), tmp_path / "run", quiet=True)
    assert load_checkpoint(tmp_path / "run").step == 150
    calls = spy_on_observe(monkeypatch)
    config = load_config(["gym", "debug"], [*overrides, "run.steps=200"])
    train(config, tmp_path / "run", quiet=True)
    assert_every_training_row_starts_from_zero(calls, config.replay.batch, config.replay.length, at_least=5)
