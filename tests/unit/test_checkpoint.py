"""Checkpoints: atomic bundles, completion marker, checksums, weights_only loading, pruning, RNG,
the split of states into agent.pt and state.json, the bundle of parts and old names upgraded."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from reverie.checkpoint import (
    capture_rng,
    list_checkpoints,
    load_checkpoint,
    merge_arrays,
    read_checkpoint,
    restore_bundle,
    restore_rng,
    save_bundle,
    save_checkpoint,
    split_arrays,
    upgrade,
)
from reverie.errors import CheckpointError


def save(logdir, step, keep=3):
    tensors = {"net": {"w": torch.full((2, 3), float(step))}, "opt": [{"step": step}], "env": np.arange(4)}
    return save_checkpoint(logdir, step, tensors, {"step": step, "replay": {"running": None}}, keep=keep)


def steps(logdir):
    return [int(p.name) for p in list_checkpoints(logdir)]


def test_round_trip(tmp_path):
    path = save(tmp_path, 7)
    assert path == tmp_path / "checkpoints" / "000000000007"
    assert sorted(p.name for p in path.iterdir()) == ["COMPLETE", "agent.pt", "state.json"]
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 7 and ckpt.path == path and ckpt.meta == {"step": 7, "replay": {"running": None}}
    torch.testing.assert_close(ckpt.tensors["net"]["w"], torch.full((2, 3), 7.0))
    assert ckpt.tensors["opt"] == [{"step": 7}]
    torch.testing.assert_close(ckpt.tensors["env"], torch.arange(4))  # numpy arrays come back as tensors


def test_no_checkpoint_is_none(tmp_path):
    assert load_checkpoint(tmp_path) is None and list_checkpoints(tmp_path) == []


def test_interrupted_save_leaves_nothing_that_looks_complete(tmp_path):
    save(tmp_path, 1)
    root = tmp_path / "checkpoints"
    (root / ".tmp-2-12345").mkdir()  # killed while writing step 2
    (root / ".tmp-2-12345" / "agent.pt").write_bytes(b"partial")
    (root / "000000000003").mkdir()  # a step folder without COMPLETE (e.g. copied by hand)
    (root / "000000000003" / "agent.pt").write_bytes(b"x")
    assert steps(tmp_path) == [1] and load_checkpoint(tmp_path).step == 1
    save(tmp_path, 4)
    assert not (root / ".tmp-2-12345").exists()  # stale tmp folders are removed by the next save
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "marker"])
def test_corrupt_checkpoint_is_reported_and_skipped(tmp_path, damage):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    if damage == "overwrite":
        data = bytearray((newest / "agent.pt").read_bytes())
        data[200:210] = b"\x00" * 10
        (newest / "agent.pt").write_bytes(bytes(data))
    elif damage == "truncate":
        (newest / "agent.pt").write_bytes((newest / "agent.pt").read_bytes()[:50])
    else:
        (newest / "COMPLETE").write_text("{not json")
    with pytest.warns(UserWarning, match=f"skipping corrupt checkpoint {newest}"):
        ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 1


def test_all_corrupt_is_an_error_not_a_fresh_start(tmp_path):
    path = save(tmp_path, 1)
    (path / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"none of the 1 .*could be loaded \(000000000001: CheckpointError: "
                                              r"state.json does not match its checksum"):
        load_checkpoint(tmp_path)  # the reasons are in the one error, not in warnings before it


def test_read_checkpoint_reads_one_folder_and_refuses_a_corrupt_one(tmp_path):
    first, second = save(tmp_path, 1), save(tmp_path, 2)
    assert read_checkpoint(first).step == 1 and read_checkpoint(str(second)).step == 2  # not just the newest
    (first / "agent.pt").write_bytes((first / "agent.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="agent.pt does not match its checksum"):
        read_checkpoint(first)


class Exploit:
    """Unpickling this would create a folder: the loader must refuse to run it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_pickled_code_is_never_executed(tmp_path):
    import hashlib

    save(tmp_path, 1)
    path = save(tmp_path, 2)
    target = tmp_path / "pwned"
    torch.save({"net": Exploit(str(target))}, path / "agent.pt")
    marker = json.loads((path / "COMPLETE").read_text())  # valid checksum: only weights_only stops it
    marker["sha256"]["agent.pt"] = hashlib.sha256((path / "agent.pt").read_bytes()).hexdigest()
    (path / "COMPLETE").write_text(json.dumps(marker))
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint"):
        ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 1 and not target.exists()


def test_keep_prunes_oldest_only_after_the_new_one_is_complete(tmp_path):
    for step in range(1, 6):
        save(tmp_path, step, keep=2)
        assert steps(tmp_path)[-1] == step and len(steps(tmp_path)) <= 2
    assert steps(tmp_path) == [4, 5]


def test_keep_never_removes_the_one_just_written(tmp_path):
    # A run resumed from step 1 because step 9 is corrupt: saving step 2 with keep=1 must keep 2.
    save(tmp_path, 1)
    save(tmp_path, 9)
    save(tmp_path, 2, keep=1)
    assert steps(tmp_path) == [2, 9]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    save(tmp_path, 3)
    save_checkpoint(tmp_path, 3, {"x": torch.ones(1)}, {"again": True})
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.meta == {"again": True} and steps(tmp_path) == [3]


def test_rng_capture_restore_reproduces_draws(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    rng_tensors, rng_meta = capture_rng()
    save_checkpoint(tmp_path, 1, {"rng": rng_tensors}, {"rng": rng_meta})  # through disk and JSON
    first = (torch.rand(3), np.random.rand(3), np.random.randn(), [random.random() for _ in range(3)])
    ckpt = load_checkpoint(tmp_path)
    restore_rng(ckpt.tensors["rng"], ckpt.meta["rng"])
    again = (torch.rand(3), np.random.rand(3), np.random.randn(), [random.random() for _ in range(3)])
    torch.testing.assert_close(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2:] == again[2:]


def test_split_and_merge_arrays_round_trip_through_disk(tmp_path):
    state = {"ram": np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::-1], "scalar": np.float64(2.5), "frames": 7,
             "nested": {"flag": np.array(True), "name": "x"}, "torch": torch.arange(3), "cuda": [torch.ones(2)],
             "none": None}
    arrays, rest = split_arrays(state)
    assert "torch" not in rest and "cuda" not in rest  # tensors leave no entry in state.json
    save_checkpoint(tmp_path, 1, {"env": arrays}, {"env": rest})
    ckpt = load_checkpoint(tmp_path)
    back = merge_arrays(ckpt.tensors["env"], json.loads(json.dumps(ckpt.meta["env"])))
    assert back.keys() == state.keys()
    for key in ("ram", "scalar"):
        assert type(back[key]) is np.ndarray and back[key].dtype == np.asarray(state[key]).dtype
        np.testing.assert_array_equal(back[key], state[key])
    assert back["scalar"].shape == () and back["nested"]["flag"].shape == ()  # 0-d arrays stay 0-d
    assert back["frames"] == 7 and back["nested"]["name"] == "x" and back["none"] is None
    assert torch.equal(back["torch"], state["torch"]) and torch.equal(back["cuda"][0], state["cuda"][0])


class Part:
    """A toy part that records the order in which it is restored."""

    def __init__(self, state, log):
        self.state, self.log = state, log

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.log.append(state)


def test_bundle_layout_and_restore_order(tmp_path):
    log = []
    parts = {"rng": Part({"torch": torch.zeros(2), "numpy": [1, 2]}, log), "agent": Part({"w": torch.ones(2)}, log),
             "loop": Part({"step": 5}, log), "replay": Part({"step": 6}, log),
             "driver": Part({"env": {"ram": np.arange(3)}, "obs": None, "policy_state": (torch.ones(1),),
                             "episode": {"score": 1.0, "length": 2}, "mid_episode": True, "more": {}}, log)}
    save_bundle(tmp_path, 5, parts, keep=1)
    ckpt = load_checkpoint(tmp_path)
    # the on-disk layout of every checkpoint so far: the driver's entries at the top level (env 0's;
    # the other envs of run.envs > 1 under "more")
    assert set(ckpt.tensors) == {"rng", "agent", "env", "policy_state"}
    assert set(ckpt.meta) == {"rng", "loop", "replay", "env", "obs", "episode", "mid_episode", "more"}
    assert ckpt.meta["env"] == {"ram": {"__array__": "int64"}} and ckpt.meta["rng"] == {"numpy": [1, 2]}
    restore_bundle(ckpt, parts)
    assert [sorted(state) for state in log] == [["env", "episode", "mid_episode", "more", "obs", "policy_state"], ["step"],
                                                ["step"], ["w"], ["numpy", "torch"]]  # reversed: the RNG last
    assert log[1] == {"step": 6} and log[2] == {"step": 5}


def test_old_state_json_names_are_upgraded():
    old = {"episode": {"ret": 3.0, "length": 4},
           "loop": {"step": 9, "pretrained": True, "sums": {"kl": [3.0, 2]}}, "replay": {"step": 10}}
    new = upgrade(old)
    assert new["episode"] == {"score": 3.0, "length": 4}
    assert new["loop"] == {"step": 9, "pretrained": True, "train_metrics": {"kl": {"total": 3.0, "count": 2}}}
    assert old["episode"] == {"ret": 3.0, "length": 4} and upgrade(new) == new  # no change in place; idempotent


def test_numpy_rng_state_round_trips_and_old_list_format_still_restores():
    # One conversion (utils.legacy_rng_*) serves numpy's global RNG and the envs' generators;
    # checkpoints written before it hold numpy's state as a 5-item list.
    import json

    import numpy as np

    from reverie.checkpoint import capture_rng, restore_rng

    np.random.seed(5)
    tensors, meta = capture_rng()
    json.dumps(meta)  # state.json must hold it
    expected = np.random.rand(3)
    restore_rng(tensors, meta)
    np.testing.assert_array_equal(np.random.rand(3), expected)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    old = {**meta, "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    after = np.random.rand(3)
    np.random.seed(99)
    restore_rng(tensors, old)
    np.testing.assert_array_equal(np.random.rand(3), after)
