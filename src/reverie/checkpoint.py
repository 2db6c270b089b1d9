"""One checkpoint bundle with everything needed to continue a run exactly.

Layout: ``LOGDIR/checkpoints/<step:012d>/`` with ``agent.pt`` (``tensors``: networks,
optimizers, slow critic, torch RNG; saved with ``torch.save``), ``state.json`` (``meta``:
counters, replay bookkeeping, env state, numpy/Python RNG) and ``COMPLETE`` (sha256 of both).

The bundle (``save_bundle``/``restore_bundle``) is assembled from the parts of a run, each of
which owns its state through ``state_dict()``/``load_state_dict()``: the agent, the driver
(env, observation, policy state, running episode), the replay's bookkeeping, the loop's
counters and the process's random streams (``RngStreams``). ``BUNDLE_LAYOUT`` says which
entry goes to which file.

Crash safety: the three files are written and fsynced inside ``checkpoints/.tmp-<step>-<pid>/``,
``COMPLETE`` last, and the folder is then renamed into place in one ``os.replace``. So a
folder named like a step is complete or absent, never half written; leftovers are hidden
``.tmp-*`` folders, removed by the next save. Older checkpoints are pruned only after the new
one is in place (Dopamine's rule: a checkpoint counts once its marker is written).

Loading never executes pickled code: ``torch.load(weights_only=True)`` only rebuilds
tensors and plain containers, and the checksums catch truncated or flipped bytes first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from reverie.errors import CheckpointError
from reverie.utils import atomic_write_bytes, legacy_rng_from_dict, legacy_rng_to_dict

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "read_checkpoint", "list_checkpoints", "capture_rng", "restore_rng",
           "Stateful", "RngStreams", "save_bundle", "restore_bundle", "split_arrays", "merge_arrays"]

AGENT, STATE, COMPLETE = "agent.pt", "state.json", "COMPLETE"


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``tensors`` as given to ``save_checkpoint`` (numpy arrays come
    back as tensors), ``meta`` the JSON-able dict, ``path`` its folder."""

    step: int
    tensors: dict[str, Any]
    meta: dict[str, Any]
    path: Path


def save_checkpoint(logdir: str | Path, step: int, tensors: dict[str, Any], meta: dict[str, Any],
                    keep: int = 3) -> Path:
    """Write ``checkpoints/<step:012d>/`` atomically and keep the newest ``keep`` complete ones.

    ``tensors``: nested dicts/lists of tensors, numbers and strings (``agent.state_dict()``,
    optimizer states, ``capture_rng()[0]``); numpy arrays are stored as tensors.
    ``meta``: a JSON-able dict. Returns the checkpoint folder.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    root = Path(logdir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    _remove_hidden(root)
    tmp = root / f".tmp-{step}-{os.getpid()}"
    tmp.mkdir()
    try:
        buffer = io.BytesIO()
        torch.save(_portable(tensors), buffer)
        files = {AGENT: buffer.getvalue(), STATE: json.dumps(meta).encode("utf-8")}
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        marker = {"step": step, "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
        atomic_write_bytes(tmp / COMPLETE, json.dumps(marker).encode("utf-8"))
        _fsync_dir(tmp)
    except BaseException:  # a full disk: free what the partial bundle took; older ones stay intact
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / f"{step:012d}"
    if final.exists():  # saving the same step again: move the old one aside, then swap in
        os.replace(final, root / f".old-{step}-{os.getpid()}")
    os.replace(tmp, final)
    _fsync_dir(root)
    _remove_hidden(root)
    for old in list_checkpoints(logdir)[:-keep]:
        if old != final:  # never the one just written, even if a newer (corrupt) one exists
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(logdir: str | Path) -> list[Path]:
    """Checkpoint folders with a ``COMPLETE`` marker, oldest first (checksums not verified)."""
    root = Path(logdir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.isdigit() and (p / COMPLETE).is_file())


def load_checkpoint(logdir: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint | None:
    """The newest complete checkpoint whose checksums verify and that loads without pickled
    code. Corrupt ones are reported with ``warnings.warn`` and skipped for older ones.

    Returns ``None`` when there is no complete checkpoint; raises ``CheckpointError`` when there
    are some but none loads (starting over silently would discard the run).
    """
    paths = list_checkpoints(logdir)
    problems = []
    for path in reversed(paths):
        try:
            checkpoint = read_checkpoint(path, map_location)
        except Exception as error:  # any failure means this bundle is unusable: try older
            problems.append(f"{path.name}: {type(error).__name__}: {error}")
            continue
        for problem in problems:  # reported once an older one loads; otherwise in the error
            warnings.warn(f"skipping corrupt checkpoint {path.parent / problem}", stacklevel=2)
        return checkpoint
    if paths:
        raise CheckpointError(f"none of the {len(paths)} checkpoints in {Path(logdir) / 'checkpoints'} could be "
                              f"loaded ({'; '.join(problems)}); move them away to start the run over")
    return None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """One checkpoint folder (an entry of ``list_checkpoints``), checksums verified; raises
    ``CheckpointError`` on a mismatch. For a run's newest good one, use ``load_checkpoint``."""
    path = Path(path)
    marker = json.loads((path / COMPLETE).read_text())
    data = {name: (path / name).read_bytes() for name in (AGENT, STATE)}
    for name, content in data.items():
        if hashlib.sha256(content).hexdigest() != marker["sha256"][name]:
            raise CheckpointError(f"{name} does not match its checksum (truncated or overwritten)")
    tensors = torch.load(io.BytesIO(data[AGENT]), map_location=map_location, weights_only=True)
    return Checkpoint(int(marker["step"]), tensors, json.loads(data[STATE]), path)


def capture_rng() -> tuple[dict[str, Any], dict[str, Any]]:
    """RNG states as ``(tensors, meta)``: torch CPU (and CUDA) states as tensors for
    ``agent.pt``; numpy's global RNG and Python's ``random`` as JSON-able values for ``state.json``."""
    tensors: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    numpy_state = legacy_rng_to_dict(np.random.get_state())
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": {**numpy_state, "keys": numpy_state["keys"].tolist()},
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``. A CUDA state saved on a GPU machine and restored without
    one is reported, since CUDA draws cannot then repeat."""
    torch.set_rng_state(tensors["torch"].cpu())
    if "cuda" in tensors:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in tensors["cuda"]])
        else:
            warnings.warn("checkpoint holds CUDA RNG states but CUDA is not available; not restored", stacklevel=2)
    np.random.set_state(legacy_rng_from_dict(meta["numpy"]))  # older checkpoints: a 5-item list
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


class Stateful(Protocol):
    """A part of a run that owns its state: what ``save_bundle`` and ``restore_bundle`` take."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RngStreams:
    """The process's random streams (torch CPU and CUDA, numpy's global, Python's ``random``)
    as a part of the bundle: ``capture_rng``/``restore_rng`` in one dict."""

    def state_dict(self) -> dict[str, Any]:
        tensors, meta = capture_rng()
        return {**tensors, **meta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_rng(state, state)  # each reads its own keys


# Where each entry of the bundle is stored. The driver's entries sit at the top level (as in
# every checkpoint so far), the other parts' under their own names. "torch": saved whole in
# agent.pt; "split": arrays and tensors in agent.pt, the rest in state.json (``split_arrays``);
# "json": whole in state.json.
BUNDLE_LAYOUT = {
    "agent": {"agent": "torch"},
    "driver": {"env": "split", "obs": "split", "policy_state": "torch", "episode": "json", "mid_episode": "json",
               "more": "split"},  # more: the envs after the first (run.envs > 1), each as the first's keys
    "replay": {"replay": "json"},
    "loop": {"loop": "json"},
    "rng": {"rng": "split"},
}


def save_bundle(logdir: str | Path, step: int, parts: dict[str, Stateful], keep: int = 3) -> Path:
    """Save every part's ``state_dict()`` in one checkpoint (``BUNDLE_LAYOUT`` names the parts).
    Parts are asked in the given order: pass the RNG streams first, so nothing that saves
    its state can move them before they are captured."""
    tensors, meta = {}, {}
    for name, part in parts.items():
        state = part.state_dict()
        for key, kind in BUNDLE_LAYOUT[name].items():
            value = state if key == name else state[key]
            if kind == "torch":
                tensors[key] = value
                continue
            arrays, rest = split_arrays(value) if kind == "split" else (None, value)
            if arrays is not None:
                tensors[key] = arrays
            meta[key] = rest
    return save_checkpoint(logdir, step, tensors, meta, keep=keep)


def restore_bundle(checkpoint: Checkpoint, parts: dict[str, Stateful]) -> None:
    """Load every part from ``checkpoint``, in the reverse order of ``parts`` (the RNG streams,
    passed first to ``save_bundle``, are restored last, after anything that could draw)."""
    tensors, meta = checkpoint.tensors, upgrade(checkpoint.meta)
    for name, part in reversed(parts.items()):
        state = {}
        for key, kind in BUNDLE_LAYOUT[name].items():
            state[key] = tensors.get(key) if kind == "torch" else merge_arrays(tensors.get(key), meta.get(key))
        part.load_state_dict(state[name] if name in state else state)


def upgrade(meta: dict[str, Any]) -> dict[str, Any]:
    """``state.json`` of older checkpoints in today's names: the running episode's ``ret`` is
    ``score``; the loop's ``sums`` (``[sum, count]`` lists) are ``train_metrics`` means."""
    meta = dict(meta)
    episode = meta.get("episode")
    if isinstance(episode, dict) and "ret" in episode:
        meta["episode"] = {("score" if key == "ret" else key): value for key, value in episode.items()}
    loop = meta.get("loop")
    if isinstance(loop, dict) and "sums" in loop:
        sums = loop["sums"]
        meta["loop"] = {**{k: v for k, v in loop.items() if k != "sums"},
                        "train_metrics": {key: {"total": total, "count": count} for key, (total, count) in sums.items()}}
    return meta


def split_arrays(state: Any) -> tuple[Any, Any]:
    """A nested dict as ``(arrays, rest)``: its numpy arrays and torch tensors (same nesting,
    ``None`` when there are none) and the JSON-able rest. An array leaves ``{"__array__": dtype}``
    in the rest, so ``merge_arrays`` gives it back as a numpy array of that dtype; a tensor (or
    a list of tensors: the CUDA RNG states) leaves nothing and comes back as a tensor."""
    if isinstance(state, dict):
        pairs = {key: split_arrays(value) for key, value in state.items()}
        arrays = {key: a for key, (a, _) in pairs.items() if a is not None}
        rest = {key: r for key, (_, r) in pairs.items() if r is not _TENSOR}
        return arrays or None, rest
    if isinstance(state, (np.ndarray, np.generic)):
        array = np.asarray(state)
        return array, {_ARRAY: str(array.dtype)}
    if _is_tensor(state):
        return state, _TENSOR
    return None, state


def merge_arrays(arrays: Any, rest: Any) -> Any:
    """Inverse of ``split_arrays`` (the arrays may have come back from disk as tensors)."""
    if isinstance(rest, dict) and set(rest) == {_ARRAY}:
        array = arrays.cpu().numpy() if isinstance(arrays, torch.Tensor) else np.asarray(arrays)
        return array.astype(rest[_ARRAY])  # a copy: nothing shares memory with the checkpoint
    if isinstance(rest, dict):
        arrays = arrays or {}
        merged = {key: merge_arrays(arrays.get(key), value) for key, value in rest.items()}
        return {**merged, **{key: value for key, value in arrays.items() if key not in rest}}
    return arrays if rest is None and arrays is not None else rest


_ARRAY = "__array__"
_TENSOR = object()  # split_arrays: a tensor leaves no entry in the JSON-able rest


def _is_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (
        isinstance(value, list) and bool(value) and all(isinstance(item, torch.Tensor) for item in value))


def _portable(value: Any) -> Any:
    """The tree as ``torch.save`` should store it: numpy arrays become tensors (``weights_only``
    loading accepts tensors and plain containers, not numpy objects) and tensors are detached
    CPU copies (``load_checkpoint``'s ``map_location`` puts them on the run's device)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(value, order="C"))  # np.array keeps 0-d arrays 0-d
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(item) for item in value)
    return value


def _remove_hidden(root: Path) -> None:
    """Remove leftovers of interrupted saves (``.tmp-*``) and of same-step replacements (``.old-*``)."""
    for path in root.glob(".*-*"):
        if path.is_dir() and path.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    """Make renames and new entries in ``path`` durable (POSIX needs the folder synced too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
