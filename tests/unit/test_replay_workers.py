"""Replay with N environments: one running episode per worker, steps added interleaved (each
round, for env i in order, its reset step when an episode starts, then its transition)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from reverie.errors import CheckpointError
from reverie.replay import Replay


def make_step(index: int, worker: int, first: bool = False, last: bool = False) -> dict:
    """A tiny step whose reward is its global index and whose action names its worker."""
    return {"image": np.full((2, 2, 1), index % 256, np.uint8), "action": np.full(3, worker, np.float32),
            "reward": float(index), "is_first": first, "is_last": last, "is_terminal": last}


def schedule(lengths: list[list[int]], rounds: int) -> list[tuple[int, bool, bool]]:
    """``(worker, is_first, is_last)`` per add, in the loop's order, for ``rounds`` rounds:
    worker w plays episodes of ``lengths[w]`` rows (reset row included), each round its
    reset row when an episode starts, then one transition."""
    order, position = [], [(0, 0)] * len(lengths)  # (episode, row) per worker
    for _ in range(rounds):
        for worker, (episode, row) in enumerate(position):
            total = lengths[worker][episode]
            if row == 0:
                order.append((worker, True, False))
                row = 1
            order.append((worker, False, row == total - 1))
            position[worker] = (episode + 1, 0) if row == total - 1 else (episode, row + 1)
    return order


def play(replay: Replay, order: list[tuple[int, bool, bool]], lo: int, hi: int,
         every: int = 0, batches: list | None = None) -> None:
    """Add ``order[lo:hi]`` (global indices ``lo..hi-1``); with ``every``, sample a batch
    after each add whose index is a multiple of it, once the replay can."""
    for index in range(lo, hi):
        worker, first, last = order[index]
        replay.add(make_step(index, worker, first, last), worker=worker)
        if every and index % every == 0 and replay.can_sample(4):
            batches.append(replay.sample(3, 4))


def held(replay: Replay) -> dict[int, list[int]]:
    """Episode id -> the global indices of its rows, from memory."""
    return {e.id: e.data["reward"][: e.length].astype(int).tolist() for e in replay._store.episodes}


def on_disk(directory: Path) -> dict[int, list[int]]:
    """Episode id -> the global indices of its rows, from the files in chunk order."""
    out: dict[int, list[int]] = {}
    for path in sorted(directory.glob("ep*.npz")):
        with np.load(path) as file:
            out.setdefault(int(path.name[2:8]), []).extend(file["reward"].astype(int).tolist())
    return out


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# Worker 0: episode A (3 rows, ends), then C (running); worker 1: B (running). By hand, the
# adds are g0 A0, g1 A1, g2 B0, g3 B1 | g4 A2 (is_last), g5 B2 | g6 C0, g7 C1, g8 B3 |
# g9 C2, g10 B4 | g11 C3, g12 B5; ids by start: A = 0, B = 1, C = 2.
SMALL = schedule([[3, 50], [50]], rounds=5)


def test_schedule_is_the_hand_written_one():
    workers = [w for w, _, _ in SMALL]
    assert workers == [0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1]
    assert [i for i, (_, first, _) in enumerate(SMALL) if first] == [0, 2, 6]
    assert [i for i, (_, _, last) in enumerate(SMALL) if last] == [4]


def test_each_worker_appends_to_its_own_episode(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, len(SMALL))
    episodes = {0: [0, 1, 4], 1: [2, 3, 5, 8, 10, 12], 2: [6, 7, 9, 11]}
    assert held(replay) == episodes
    assert replay.num_steps == 13 and replay.num_episodes == 3 and replay.step == 13
    replay.flush()
    assert on_disk(tmp_path) == episodes


def test_chunk_names_carry_the_global_steps_of_interleaved_rows(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, 12)
    assert names(tmp_path) == [
        "ep000000-0000-000000000000-000000000001-2.npz",
        "ep000000-0001-000000000004-000000000004-1.npz",  # A's tail, written when A ends
        "ep000001-0000-000000000002-000000000003-2.npz",
        "ep000001-0001-000000000005-000000000008-2.npz",  # rows at g5 and g8: not contiguous
        "ep000002-0000-000000000006-000000000007-2.npz",
        "ep000002-0001-000000000009-000000000011-2.npz",
    ]
    replay.flush()  # B's unsaved row g10; C has none
    assert names(tmp_path)[-3] == "ep000001-0002-000000000010-000000000010-1.npz"
    replay.add(make_step(12, 1), worker=1)
    replay.flush()
    assert names(tmp_path)[-3] == "ep000001-0003-000000000012-000000000012-1.npz"
    reopened = Replay.load(tmp_path, capacity=100, chunk=2, upto_step=13, running=[2, 1])
    assert held(reopened) == held(replay)


def test_ongoing_false_excludes_every_running_episode(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2, seed=5)
    play(replay, SMALL, 0, len(SMALL))
    assert replay.sampleable(ongoing=False) == [0] and replay.sampleable() == [0, 1, 2]
    starts = replay.sample(200, 2, ongoing=False)["reward"][:, 0].astype(int)
    assert set(starts) == {0, 1}  # only in A (3 rows, L = 2: starts 0 and 1)
    assert set(replay.sample(300, 2)["reward"][:, 0].astype(int)) > {0, 2, 6}  # running ones with ongoing
    assert replay.can_sample(2, ongoing=False) and not replay.can_sample(2, ongoing=False, minlen=3)


def test_no_sampleable_episode_while_every_episode_runs(tmp_path):
    replay = Replay(tmp_path, capacity=100)
    play(replay, SMALL, 0, 4)  # A and B both running
    assert replay.sampleable(ongoing=False) == [] and not replay.can_sample(2, ongoing=False)
    with pytest.raises(ValueError, match="no episode to sample"):
        replay.sample(1, 2, ongoing=False)


def test_eviction_keeps_running_episodes_and_drops_the_oldest_finished_first(tmp_path):
    # Worker 0 plays 2-row episodes (ids 0, 2, 3, ...), worker 1 one long episode (id 1), the
    # oldest held. Capacity 6: each time it is exceeded the oldest finished episode goes, the
    # long running one never, even when only running episodes are left and it is exceeded.
    replay = Replay(tmp_path, capacity=6, chunk=100)
    order = schedule([[2] * 20, [100]], rounds=6)
    after = {}
    for index in range(len(order)):
        play(replay, order, index, index + 1)
        after[index] = (sorted(held(replay)), replay.num_steps)
    # Rounds: g0 id0, g1 (ends), g2 id1, g3 | g4 id2, g5 (ends), g6 | g7 id3, g8, g9 | g10 id4, g11, g12 | ...
    assert after[5] == ([0, 1, 2], 6)
    assert after[6] == ([1, 2], 5)  # id 0, the oldest finished, goes; id 1 is older but running
    assert after[8] == ([1, 3], 5)  # then id 2
    assert after[10] == ([1, 4], 5)  # then id 3, though id 4 (running) is one step old
    assert after[12] == ([1], 5)  # both finished ones gone, the running one stays
    assert after[16] == ([1, 6], 7)  # over capacity with only running episodes: nothing evicted


def test_eviction_drops_files_of_evicted_episodes_at_flush(tmp_path):
    replay = Replay(tmp_path, capacity=6, chunk=100)
    play(replay, schedule([[2] * 20, [100]], rounds=3), 0, 10)
    replay.flush()
    assert sorted(on_disk(tmp_path)) == sorted(held(replay)) == [1, 3]


def test_load_reapplies_eviction_with_the_checkpoints_running_episodes_pinned(tmp_path):
    # At g16 (see above) both held episodes run and exceed capacity 6: load keeps both only
    # when told they run; the one-environment rule sees only the newest as running.
    replay = Replay(tmp_path, capacity=6, chunk=100)
    play(replay, schedule([[2] * 20, [100]], rounds=6), 0, 17)
    replay.flush()
    state = replay.state_dict()
    assert sorted(held(replay)) == [1, 6] and Replay.running_ids(state) == [6, 1]
    reopened = Replay.load(tmp_path, capacity=6, chunk=100, upto_step=17, running=Replay.running_ids(state))
    assert held(reopened) == held(replay) and reopened.state_dict()["running"] == state["running"]
    guessed = Replay.load(tmp_path, capacity=6, chunk=100, upto_step=17)
    assert sorted(held(guessed)) == [6]


def test_worker_error_names_the_worker(tmp_path):
    replay = Replay(tmp_path, capacity=100)
    replay.add(make_step(0, 0, first=True))
    with pytest.raises(ValueError, match="is_first=False but no episode is running on worker 1;"):
        replay.add(make_step(1, 1), worker=1)
    with pytest.raises(ValueError, match="non-negative"):
        replay.add(make_step(1, 0, first=True), worker=-1)
    replay.add(make_step(1, 0, last=True))
    with pytest.raises(ValueError, match="is_first=False but no episode is running;"):
        replay.add(make_step(2, 0))


def test_is_first_closes_only_its_own_workers_episode(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=100)
    for index, (worker, first) in enumerate([(0, True), (1, True), (0, False), (1, False), (1, True), (0, False)]):
        replay.add(make_step(index, worker, first), worker=worker)
    assert held(replay) == {0: [0, 2, 5], 1: [1, 3], 2: [4]}
    assert names(tmp_path) == ["ep000001-0000-000000000001-000000000003-2.npz"]  # closed without is_last
    assert replay.state_dict()["running"] == [{"id": 0, "length": 3}, {"id": 2, "length": 1}]


# ------------------------------------------------------------------------ resume
LONG = schedule([[5, 9, 4, 12, 6, 7, 30], [11, 3, 8, 30]], rounds=30)  # 2 workers, evictions at capacity 25
END = len(LONG)
SPLITS = {
    # both workers inside an episode at the end of a round
    "inside": next(i + 1 for i in range(40, END - 1) if LONG[i][0] == 1 and LONG[i + 1] == (0, False, False)
                   and not any(first or last for _, first, last in LONG[i - 3 : i + 4])),
    # worker 0 ended an episode in the round that just ended, worker 1 is inside one
    "worker0_at_end": next(i + 2 for i in range(30, END - 2) if LONG[i] == (0, False, True) and LONG[i + 1][0] == 1
                           and not LONG[i + 1][1] and not LONG[i + 1][2]),
    # mid-round, right after worker 1 ended an episode (worker 0 is inside one)
    "worker1_at_end": next(i + 1 for i in range(30, END) if LONG[i] == (1, False, True)),
}


def straight_run(directory: Path, split: int) -> tuple[Replay, list]:
    replay, batches = Replay(directory, capacity=25, chunk=3, seed=11), []
    play(replay, LONG, 0, split, every=3, batches=batches)
    replay.flush()  # the checkpoint at split
    play(replay, LONG, split, END, every=3, batches=batches)
    replay.flush()
    return replay, batches


@pytest.mark.parametrize("where", sorted(SPLITS))
def test_resume_from_a_checkpoint_repeats_the_uninterrupted_run(tmp_path, where):
    split = SPLITS[where]
    straight, expected = straight_run(tmp_path / "straight", split)

    replay, batches = Replay(tmp_path / "run", capacity=25, chunk=3, seed=11), []
    play(replay, LONG, 0, split, every=3, batches=batches)
    replay.flush()
    state = replay.state_dict()
    assert isinstance(state["running"], list) and len(state["running"]) == 2
    play(replay, LONG, split, split + 20)  # the run goes on (chunks, evictions), then is killed
    del replay
    resumed = Replay.load(tmp_path / "run", capacity=25, chunk=3, seed=0, upto_step=state["step"],
                          strict=True, running=Replay.running_ids(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a consistent reload must not warn
        resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    play(resumed, LONG, split, END, every=3, batches=batches)
    resumed.flush()

    assert len(batches) == len(expected) > 20
    for got, want in zip(batches, expected):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert names(tmp_path / "run") == names(tmp_path / "straight")
    assert on_disk(tmp_path / "run") == on_disk(tmp_path / "straight") == held(straight) == held(resumed)
    assert resumed.state_dict() == straight.state_dict()


def test_the_splits_are_what_their_names_say():
    states = {}
    for where, split in SPLITS.items():
        open_ = {}  # worker -> rows of its episode so far
        for worker, first, last in LONG[:split]:
            open_[worker] = 1 if first else open_[worker] + 1
            if last:
                open_[worker] = 0
        states[where] = open_
    assert all(rows > 1 for rows in states["inside"].values())
    assert states["worker0_at_end"][0] == 0 and states["worker0_at_end"][1] > 1
    assert states["worker1_at_end"][1] == 0 and states["worker1_at_end"][0] > 1
    assert LONG[SPLITS["worker0_at_end"]] == (0, True, False)  # next round: worker 0 resets


def test_the_one_environment_state_format_still_loads(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=4, seed=3)
    play(replay, schedule([[6, 20]], rounds=9), 0, 11)
    replay.flush()
    state = replay.state_dict()
    assert state["running"] == {"id": 1, "length": 5}  # today's format
    assert Replay.running_ids(state) == [1] and Replay.running_ids({**state, "running": None}) == [None]
    for running in (None, Replay.running_ids(state)):
        reopened = Replay.load(tmp_path, capacity=100, chunk=4, upto_step=state["step"], running=running)
        for entry in (state["running"], [state["running"]], [state["running"], None]):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                reopened.load_state_dict({**state, "running": entry})
        reopened.add(make_step(11, 0), worker=0)  # appends to the reopened episode
        assert held(reopened)[1] == [6, 7, 8, 9, 10, 11]


def test_without_running_ids_a_two_worker_resume_warns(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, len(SMALL))
    replay.flush()
    state = replay.state_dict()
    reopened = Replay.load(tmp_path, capacity=100, chunk=2, upto_step=state["step"])
    assert reopened.state_dict()["running"] is None  # episode 2 (newest) ended its rows before g12
    with pytest.warns(UserWarning, match="does not match the checkpoint"):
        reopened.load_state_dict(state)


def test_running_ids_of_an_episode_that_ended_are_not_reopened(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, len(SMALL))
    reopened = Replay.load(tmp_path, capacity=100, chunk=2, running=[0, 1, None])
    assert reopened.state_dict()["running"] == [None, {"id": 1, "length": 6}, None]


def test_an_interleaved_chunk_straddling_upto_step_is_dropped_or_refused(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, len(SMALL))  # B's chunk 1 holds g5 and g8
    before = names(tmp_path)
    with pytest.raises(CheckpointError, match="ep000001-0001-000000000005-000000000008-2.npz"):
        Replay.load(tmp_path, capacity=100, chunk=2, upto_step=7, strict=True, running=[2, 1])
    assert names(tmp_path) == before  # a refused load changes nothing
    with pytest.warns(UserWarning, match="dropping .*ep000001-0001-000000000005-000000000008-2.npz"):
        resumed = Replay.load(tmp_path, capacity=100, chunk=2, upto_step=7, running=[2, 1])
    assert held(resumed) == {0: [0, 1, 4], 1: [2, 3], 2: [6]}  # C's chunk 0 (g6, g7) is contiguous: cut
    assert names(tmp_path) == ["ep000000-0000-000000000000-000000000001-2.npz",
                               "ep000000-0001-000000000004-000000000004-1.npz",
                               "ep000001-0000-000000000002-000000000003-2.npz",
                               "ep000002-0000-000000000006-000000000006-1.npz"]


def test_a_missing_interleaved_chunk_ends_its_episode(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, len(SMALL))
    replay.flush()
    (tmp_path / "ep000001-0001-000000000005-000000000008-2.npz").unlink()
    with pytest.warns(UserWarning, match="a chunk before it is missing"):
        reopened = Replay.load(tmp_path, capacity=100, chunk=2, running=[2, 1])
    assert held(reopened)[1] == [2, 3]


def test_names_whose_length_cannot_fit_their_steps_are_ignored(tmp_path):
    replay = Replay(tmp_path, capacity=100, chunk=2)
    play(replay, SMALL, 0, 5)
    (tmp_path / "ep000009-0000-000000000020-000000000021-3.npz").write_bytes(b"")
    (tmp_path / "ep000009-0000-000000000020-000000000022-1.npz").write_bytes(b"")
    with pytest.warns(UserWarning, match="not a replay chunk name") as record:
        reopened = Replay.load(tmp_path, capacity=100, chunk=2)
    assert len(record) == 2 and sorted(held(reopened)) == [0, 1]
