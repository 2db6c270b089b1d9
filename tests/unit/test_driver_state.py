"""The driver owns its state: a checkpoint taken inside an episode, or at its end, restores a
fresh driver on a fresh env that then plays on exactly as the original (real CartPole env, the
real checkpoint bundle on disk, and a checkpoint written under the old names)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from reverie.checkpoint import load_checkpoint, restore_bundle, save_bundle
from reverie.config import load_config
from reverie.envs import make_env
from reverie.run.driver import Driver
from reverie.run.train import LoopState


class FixedPolicy:
    """Pushes left, then right, by the step count: deterministic without a network."""

    device = "cpu"

    def policy(self, obs, state, mode):
        count = 0 if state is None else int(state["count"])
        action = np.eye(2, dtype=np.float32)[count % 2][None]
        return action, {"count": torch.tensor(count + 1)}


def make_driver():
    config = load_config("gym", ["task=gym_CartPole-v1", "seed=3"])
    return Driver(make_env(config, "train"), FixedPolicy())


def play(driver: Driver, steps: int) -> list[tuple]:
    """``steps`` agent steps (resetting when needed): observations, rewards and finished episodes."""
    trace = []
    for _ in range(steps):
        if driver.obs is None:
            driver.reset()
        transition, finished = driver.step("train")
        trace.append((transition["vector"].tolist(), transition["reward"], finished))
    return trace


def until_episode_end(driver: Driver) -> None:
    while True:
        if play(driver, 1)[-1][2] is not None:
            return


def to_old_names(checkpoint_dir) -> None:
    """Rewrite state.json as the checkpoints before the rename wrote it (``ret``, ``sums``)."""
    meta = json.loads((checkpoint_dir / "state.json").read_text())
    meta["episode"]["ret"] = meta["episode"].pop("score")
    loop = meta["loop"]
    loop["sums"] = {key: [mean["total"], mean["count"]] for key, mean in loop.pop("train_metrics").items()}
    data = json.dumps(meta).encode()
    (checkpoint_dir / "state.json").write_bytes(data)
    marker = json.loads((checkpoint_dir / "COMPLETE").read_text())
    marker["sha256"]["state.json"] = hashlib.sha256(data).hexdigest()
    (checkpoint_dir / "COMPLETE").write_text(json.dumps(marker))


@pytest.mark.parametrize("where", ["inside an episode", "at an episode end"])
@pytest.mark.parametrize("names", ["current", "old"])
def test_a_restored_driver_plays_on_as_the_original(tmp_path, where, names):
    original = make_driver()
    play(original, 30)  # past a first episode or two of the alternating policy
    if where == "at an episode end":
        until_episode_end(original)
    else:
        play(original, 3)
    loop = LoopState(step=33, episodes=1)
    loop.add({"kl": 0.25})
    path = save_bundle(tmp_path, 33, {"loop": loop, "driver": original})
    if names == "old":
        to_old_names(path)
    fresh, fresh_loop = make_driver(), LoopState()
    restore_bundle(load_checkpoint(tmp_path), {"loop": fresh_loop, "driver": fresh})
    assert (fresh.obs is None) == (where == "at an episode end")
    if where == "inside an episode":  # at an end the next reset starts new totals anyway
        assert fresh.episode == original.episode and fresh.policy_state == original.policy_state
    assert fresh_loop.means() == {"train/kl": 0.25}
    expected, got = play(original, 40), play(fresh, 40)
    assert got == expected
    assert any(finished is not None for *_, finished in expected)  # the comparison crosses an episode end


class CountingPolicy:
    """N envs: each env's row of the state counts its steps since its episode started (reset
    where ``is_first``, as the RSSM resets its row); the action alternates with that count."""

    device = "cpu"

    def policy(self, obs, state, mode):
        first = torch.as_tensor(obs["is_first"])
        count = torch.zeros(len(first), dtype=torch.long) if state is None else state["count"]
        count = torch.where(first, torch.zeros_like(count), count)
        return np.eye(2, dtype=np.float32)[(count % 2).numpy()], {"count": count + 1}


def make_two_env_driver() -> Driver:
    from reverie.envs import make_envs

    config = load_config("gym", ["task=gym_CartPole-v1", "seed=3", "env.parallel=none"])
    return Driver(make_envs(config, 2, "none"), CountingPolicy())


def play_rounds(driver: Driver, rounds: int) -> list[tuple]:
    trace = []
    for _ in range(rounds):
        firsts = driver.reset_finished()
        steps = driver.step_all("train")
        trace.append(([index for index, _ in firsts],
                      [(t["vector"].tolist(), t["reward"], done) for t, done in steps]))
    return trace


def test_two_envs_restore_where_one_ended_an_episode_and_the_other_plays_on(tmp_path):
    original = make_two_env_driver()
    for _ in range(200):  # until env 0 has just ended an episode while env 1 is inside one
        play_rounds(original, 1)
        if original.slots[0].obs is None and original.slots[1].obs is not None:
            break
    assert original.slots[0].obs is None and original.slots[1].obs is not None
    save_bundle(tmp_path, 1, {"driver": original})
    fresh = make_two_env_driver()
    restore_bundle(load_checkpoint(tmp_path), {"driver": fresh})
    assert fresh.slots[0].obs is None and fresh.slots[1].episode == original.slots[1].episode
    assert torch.equal(fresh.policy_state["count"], original.policy_state["count"])  # env 1's row goes on
    expected, got = play_rounds(original, 60), play_rounds(fresh, 60)
    assert got == expected
    assert {index for firsts, _ in expected for index in firsts} == {0, 1}  # both envs start episodes in it
