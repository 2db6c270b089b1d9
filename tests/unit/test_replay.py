"""Replay: sampling as in the paper (sec. 2.1), FIFO capacity, chunked atomic files, resume."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from reverie.replay import Replay


def make_step(index: int, first: bool = False, last: bool = False) -> dict:
    """A tiny step whose reward and image carry its global index, so samples can be traced."""
    return {"image": np.full((2, 2, 1), index % 256, np.uint8), "action": np.full(3, index, np.float32),
            "reward": float(index), "is_first": first, "is_last": last, "is_terminal": last}


def add_episodes(replay: Replay, lengths: list[int], start: int = 0, close_last: bool = True) -> int:
    """Add episodes of the given lengths; global indices continue from ``start``."""
    index = start
    for n, length in enumerate(lengths):
        for t in range(length):
            last = t == length - 1 and (close_last or n < len(lengths) - 1)
            replay.add(make_step(index, first=t == 0, last=last))
            index += 1
    return index


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_shapes_and_dtypes(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=8)
    add_episodes(replay, [6])
    batch = replay.sample(4, 5)
    assert batch["image"].shape == (4, 5, 2, 2, 1) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (4, 5, 3) and batch["action"].dtype == np.float32
    assert batch["reward"].shape == (4, 5) and batch["reward"].dtype == np.float32
    for key in ("is_first", "is_last", "is_terminal"):
        assert batch[key].shape == (4, 5) and batch[key].dtype == bool


def test_start_index_is_clipped_to_episode_length_minus_L(tmp_path):
    # One episode of 10 steps, L = 4: start = min(U{0..9}, 6), so starts 0..5 have
    # probability 1/10 each and start 6 has 4/10 (the paper's clip favours episode ends).
    replay = Replay(tmp_path, capacity=100, seed=1)
    add_episodes(replay, [10])
    rewards = replay.sample(4000, 4)["reward"]
    starts = rewards[:, 0].astype(int)
    assert np.all(rewards == starts[:, None] + np.arange(4))  # contiguous, never past the end
    assert starts.min() == 0 and starts.max() == 6
    frequency = np.bincount(starts, minlength=7) / len(starts)
    np.testing.assert_allclose(frequency, [0.1] * 6 + [0.4], atol=0.03)


def test_every_sequence_starts_with_is_first_even_mid_episode(tmp_path):
    # Official replay.py, _sample_sequence: is_first[0] = True on every sampled sequence, so
    # training starts each one from the zero state. Inside a sequence only real episode
    # starts are marked.
    replay = Replay(tmp_path, capacity=100, seed=3)
    add_episodes(replay, [30, 40])
    batch = replay.sample(500, 8)
    starts = batch["reward"][:, 0].astype(int)
    assert np.any((starts != 0) & (starts != 30))  # most sequences start mid-episode
    assert batch["is_first"][:, 0].all()
    assert not batch["is_first"][:, 1:].any()  # no sequence crosses an episode start here


def test_short_episodes_continue_into_next_with_is_first(tmp_path):
    # Episodes [0 1 2] [3 4] [5 6 7 8]; L = 5 is longer than each, so a sequence starts at an
    # episode start and continues in storage order, wrapping from the last to the first.
    replay = Replay(tmp_path, capacity=100, seed=2)
    add_episodes(replay, [3, 2, 4])
    batch = replay.sample(200, 5)
    rewards = batch["reward"].astype(int)
    assert set(rewards[:, 0]) == {0, 3, 5}
    np.testing.assert_array_equal(rewards, (rewards[:, :1] + np.arange(5)) % 9)
    np.testing.assert_array_equal(batch["is_first"], np.isin(rewards, [0, 3, 5]))
    np.testing.assert_array_equal(batch["is_last"], np.isin(rewards, [2, 4, 8]))


def test_too_few_steps_is_a_clear_error(tmp_path):
    replay = Replay(tmp_path, capacity=100)
    add_episodes(replay, [3])
    with pytest.raises(ValueError, match="fewer than the sequence length"):
        replay.sample(2, 4)


def test_same_seed_and_adds_give_same_batches(tmp_path):
    batches = []
    for name in ("a", "b"):
        replay = Replay(tmp_path / name, capacity=100, chunk=4, seed=7)
        add_episodes(replay, [5, 9, 3], close_last=False)
        batches.append(replay.sample(8, 6))
    for key in batches[0]:
        np.testing.assert_array_equal(batches[0][key], batches[1][key])


def test_step_validation(tmp_path):
    replay = Replay(tmp_path, capacity=100)
    with pytest.raises(ValueError, match="is_first=False"):
        replay.add(make_step(0))
    replay.add(make_step(0, first=True))
    with pytest.raises(ValueError, match="shape"):
        replay.add({**make_step(1), "action": 0.0})
    with pytest.raises(ValueError, match="keys"):
        replay.add({k: v for k, v in make_step(1).items() if k != "image"})


def test_is_first_closes_an_unfinished_episode(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=100)
    add_episodes(replay, [3, 2], close_last=False)  # episode 0 never saw is_last
    assert replay.num_episodes == 2 and replay.num_steps == 5
    assert files(tmp_path)[0] == "ep000000-0000-000000000000-000000000002-3.npz"  # written when closed


def test_fifo_eviction_drops_oldest_episodes_and_their_files(tmp_path):
    # capacity 10, episodes of 4: at the 11th step episode 0 goes, at the 15th episode 1.
    replay = Replay(tmp_path, capacity=10, chunk=100)
    add_episodes(replay, [4, 4, 4, 4])
    assert replay.num_steps == 8 and replay.num_episodes == 2 and replay.step == 16
    assert set(replay.sample(50, 4)["reward"].ravel()) <= set(range(8, 16))
    assert len(files(tmp_path)) == 4  # evicted files stay until the next flush (exact resume)
    replay.flush()
    assert [name[:8] for name in files(tmp_path)] == ["ep000002", "ep000003"]


def test_running_episode_is_never_evicted(tmp_path):
    replay = Replay(tmp_path, capacity=5, chunk=100)
    add_episodes(replay, [3, 8], close_last=False)
    assert replay.num_episodes == 1 and replay.num_steps == 8  # over capacity, but still running


def test_long_running_episode_is_chunked_and_sampleable_before_it_ends(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4)
    add_episodes(replay, [10], close_last=False)
    assert files(tmp_path) == ["ep000000-0000-000000000000-000000000003-4.npz",
                               "ep000000-0001-000000000004-000000000007-4.npz"]
    assert set(replay.sample(20, 6)["reward"][:, 0]) <= set(range(5))  # from memory, before it ends
    on_disk = Replay.load(tmp_path, capacity=100, chunk=4)  # what a kill now would leave
    assert on_disk.num_steps == 8 and on_disk.state_dict()["running"] == {"id": 0, "length": 8}
    replay.flush()
    assert files(tmp_path)[-1] == "ep000000-0002-000000000008-000000000009-2.npz"


def test_reopen_from_disk_samples_identically(tmp_path):
    original = Replay(tmp_path, capacity=30, chunk=4, seed=3)
    index = add_episodes(original, [7, 12, 5, 9], close_last=False)  # evictions and a running episode
    original.flush()
    state = original.state_dict()
    reopened = Replay.load(tmp_path, capacity=30, chunk=4, seed=99, upto_step=state["step"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a consistent reload must not warn
        reopened.load_state_dict(state)
    assert reopened.state_dict() == state
    for replay in (original, reopened):  # the reopened running episode takes new steps
        add_episodes(replay, [3, 4], start=index)
    assert reopened.state_dict() == original.state_dict()
    for a, b in zip(original.sample(16, 8).values(), reopened.sample(16, 8).values()):
        np.testing.assert_array_equal(a, b)


def test_upto_step_discards_what_was_written_after_the_checkpoint(tmp_path):
    original = Replay(tmp_path / "a", capacity=100, chunk=4)
    index = add_episodes(original, [6, 5], close_last=False)
    original.flush()
    state = original.state_dict()
    kept = files(tmp_path / "a")
    add_episodes(original, [9, 3], start=index)  # the run goes on, then is killed
    original.flush()
    resumed = Replay.load(tmp_path / "a", capacity=100, chunk=4, upto_step=state["step"])
    resumed.load_state_dict(state)
    assert files(tmp_path / "a") == kept and resumed.num_steps == 11
    # The resumed run regenerates the same steps: files and samples match an uninterrupted run.
    add_episodes(resumed, [9, 3], start=index)
    resumed.flush()
    straight = Replay(tmp_path / "b", capacity=100, chunk=4)
    add_episodes(straight, [6, 5], close_last=False)
    straight.flush()
    add_episodes(straight, [9, 3], start=index)
    straight.flush()
    assert files(tmp_path / "a") == files(tmp_path / "b")
    np.testing.assert_array_equal(resumed.sample(10, 5)["reward"], straight.sample(10, 5)["reward"])


def test_upto_step_truncates_a_chunk_that_straddles_it(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4)
    add_episodes(replay, [10], close_last=False)  # chunks 0-3 and 4-7 on disk
    resumed = Replay.load(tmp_path, capacity=100, chunk=4, upto_step=6)
    assert files(tmp_path) == ["ep000000-0000-000000000000-000000000003-4.npz",
                               "ep000000-0001-000000000004-000000000005-2.npz"]
    assert resumed.num_steps == 6 and resumed.step == 6
    np.testing.assert_array_equal(resumed.sample(3, 6)["reward"][0], np.arange(6))


def test_upto_step_zero_starts_over(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4)
    add_episodes(replay, [10])
    with pytest.raises(FileExistsError):
        Replay(tmp_path, capacity=100)
    empty = Replay.load(tmp_path, capacity=100, upto_step=0)
    assert empty.num_steps == 0 and files(tmp_path) == []


def test_tmp_leftovers_are_deleted_and_ignored(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4)
    add_episodes(replay, [5])
    (tmp_path / ".ep000001-0000-000000000005-000000000009-5.npz.abc123.tmp").write_bytes(b"half")
    (tmp_path / "other.tmp").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reopened = Replay.load(tmp_path, capacity=100, chunk=4)
    assert reopened.num_steps == 5 and not list(tmp_path.glob("*.tmp"))


def test_corrupt_file_is_reported_and_skipped(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4)
    add_episodes(replay, [10, 3])  # episode 0: chunks 0-3, 4-7, 8-9; episode 1: 10-12
    bad = tmp_path / "ep000000-0001-000000000004-000000000007-4.npz"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        reopened = Replay.load(tmp_path, capacity=100, chunk=4)
    # Episode 0 keeps the steps before the corrupt chunk; the chunk after it would leave a gap.
    assert reopened.num_episodes == 2 and reopened.num_steps == 4 + 3
    assert (tmp_path / (bad.name + ".corrupt")).exists()
    assert set(reopened.sample(20, 2)["reward"].ravel()) <= {0, 1, 2, 3, 10, 11, 12}


def test_bytes_per_step_atari(tmp_path):
    replay = Replay(tmp_path, capacity=100)
    replay.add({"image": np.zeros((64, 64, 1), np.uint8), "action": np.zeros(18, np.float32), "reward": 0.0,
                "is_first": True, "is_last": False, "is_terminal": False})
    assert replay.bytes_per_step() == 64 * 64 + 18 * 4 + 4 + 3  # 4175 bytes


def test_prioritize_ends_draws_the_start_in_0_to_len_inclusive_like_the_official_replay(tmp_path):
    # Official replay.py with minlen = maxlen = L: upper = len − L + 1 + L, so the start is
    # min(U{0..len}, len − L). One episode of 10 steps, L = 4: starts 0..5 have probability
    # 1/11 each, start 6 has 5/11 (paper: 1/10 and 4/10, see the test above).
    replay = Replay(tmp_path, capacity=100, seed=4)
    add_episodes(replay, [10])
    starts = replay.sample(6000, 4, prioritize_ends=True)["reward"][:, 0].astype(int)
    frequency = np.bincount(starts, minlength=7) / len(starts)
    np.testing.assert_allclose(frequency, [1 / 11] * 6 + [5 / 11], atol=0.025)


def test_cross_episodes_puts_the_episode_end_at_every_position_of_the_window(tmp_path):
    # Episodes [0..9] [10..19] [20..29], L = 4, cross_episodes: the start is uniform over the
    # episode's 10 rows, never clipped, and a window that runs past the end continues into the
    # next stored episode (wrapping to the oldest) behind an is_first. So the terminal step sits
    # at each of the L positions, where the windowed rules (the tests above) put it only last.
    replay = Replay(tmp_path, capacity=100, seed=5)
    add_episodes(replay, [10, 10, 10])
    batch = replay.sample(6000, 4, cross_episodes=True)
    rewards = batch["reward"].astype(int)
    np.testing.assert_array_equal(rewards, (rewards[:, :1] + np.arange(4)) % 30)
    np.testing.assert_allclose(np.bincount(rewards[:, 0] % 10, minlength=10) / len(rewards), [0.1] * 10, atol=0.02)
    np.testing.assert_array_equal(batch["is_first"][:, 1:], rewards[:, 1:] % 10 == 0)
    np.testing.assert_array_equal(batch["is_terminal"], rewards % 10 == 9)
    positions = np.nonzero(batch["is_terminal"])[1]
    assert set(positions) == {0, 1, 2, 3}
    clipped = replay.sample(6000, 4)["is_terminal"]  # the paper's rule: the end only at L − 1
    assert set(np.nonzero(clipped)[1]) == {3}
