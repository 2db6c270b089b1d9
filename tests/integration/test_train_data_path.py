"""The training loop through the real producers (env → Driver → Replay → Agent.train): what
the world model is actually fed, not what a hand-built batch says it is fed."""

from pathlib import Path

import numpy as np
import torch

from reverie.config import load_config
from reverie.run.train import train
from reverie.world_model.rssm import RSSM


def test_every_training_sequence_starts_from_the_zero_state(tmp_path: Path, monkeypatch):
    # Spy on RSSM.observe during a real `train` run: every training batch comes from the real
    # Replay. Each row must start from the zero state: either no state is passed (observe
    # starts from `initial`), or the first step is marked is_first, which resets it. Before
    # the fix the loop passed the previous batch's last posterior and the replay never set
    # is_first at a sequence start, so rows started from an unrelated sequence's state.
    calls = []
    observe = RSSM.observe

    def spy(self, embed, action, is_first, state=None, **kwargs):
        calls.append((is_first.detach().clone(), None if state is None else {k: v.clone() for k, v in state.items()}))
        return observe(self, embed, action, is_first, state, **kwargs)

    monkeypatch.setattr(RSSM, "observe", spy)
    config = load_config(["gym", "debug"], ["task=gym_CartPole-v1", "device=cpu", "run.steps=300", "run.prefill=100",
                                            "run.pretrain=2", "run.train_every=20", "run.eval_every=0",
                                            "run.log_every=1000", "run.checkpoint_every=1000"])
    train(config, tmp_path / "run", quiet=True)
    batch, length = config.replay.batch, config.replay.length
    training = [(f, s) for f, s in calls if f.shape == (batch, length)]
    assert len(training) >= 10
    for is_first, state in training:
        assert is_first[:, 0].bool().all()
        assert state is None or all(torch.count_nonzero(v) == 0 for v in state.values())
    # The batches really come from mid-episode starts (CartPole episodes are longer than L
    # once the agent learns a little; early on at least some are).
    assert any(not f[:, 1:].bool().any(1).all() for f, _ in training)


def test_checkpoint_holds_no_training_state(tmp_path: Path):
    from reverie.checkpoint import load_checkpoint

    config = load_config(["gym", "debug"], ["task=gym_CartPole-v1", "device=cpu", "run.steps=150", "run.prefill=100",
                                            "run.pretrain=1", "run.eval_every=0", "run.checkpoint_every=150"])
    train(config, tmp_path / "run", quiet=True)
    ckpt = load_checkpoint(tmp_path / "run", map_location="cpu")
    assert "train_state" not in ckpt.tensors
    assert np.isfinite(ckpt.meta["loop"]["step"])
