"""Small shared helpers: atomic file writes, file locks, device choice, seeding."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from reverie.errors import ConfigError


@functools.cache
def _umask() -> int:
    """The process umask, read once when first needed (not at import). Linux reports it in
    /proc/self/status; elsewhere it is read the only portable way, by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Writes a temporary file in the same folder, fsyncs it, then ``os.replace``s it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise naming(error, path) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def naming(error: OSError, path: str | Path) -> OSError:
    """``error`` with the file it concerns (a failed ``write`` names none), so messages can say
    which file a full disk stopped."""
    if error.filename is not None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class Flock:
    """An exclusive ``flock`` on a file or a directory that exists, held from ``acquire()``
    until ``release()`` (or the end of a ``with`` block). The kernel drops it when the holder
    dies, however it dies, so a killed holder never blocks the next one; locking a directory
    writes nothing in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True when this object holds the lock now, False when another holder has it."""
        fd = os.open(self.path, os.O_RDONLY)  # not inherited by subprocesses
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    def held_elsewhere(self) -> bool:
        """True while another holder has the lock; a probe (a free lock is taken and dropped at
        once), so an ``acquire`` elsewhere at that instant fails: acquirers that a probe may meet retry."""
        if not self.path.exists():
            return False
        free = self.acquire()
        self.release()
        return not free

    def __enter__(self) -> Flock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def resolve_device(name: str):
    """``auto`` picks CUDA when available; asking for CUDA without one is an error, not a fallback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for but torch.cuda.is_available() is false; "
                           "install a CUDA build of torch (make TORCH=torch ...) or use --set device=cpu")
    return torch.device(name)


def cpu_compiler() -> str | None:
    """The C++ compiler that ``torch.compile`` (Inductor) builds CPU kernels with, if this
    machine has it: ``$CXX``, else Inductor's default (``clang++`` on macOS, ``g++``
    elsewhere); None without one."""
    import shutil
    import sys

    return shutil.which(os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++"))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (CPU and CUDA). Deterministic
    algorithms are a setting of the run, scoped: ``reverie.runtime.deterministic_algorithms``."""
    import torch  # imported here: `import reverie.envs` should not pay for torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block on torch's RNG seeded with ``seed`` and restore the previous state after
    (CPU and every CUDA device): evaluation and videos never shift the training stream."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def require(module: str, extra: str):
    """Import an optional dependency or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed ({error}); install it with: pip install 'reverie[{extra}]'"
        ) from error


_MALLOC_KEPT = False


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS.

    An atari update allocates and frees gigabytes of activations. By default glibc serves
    each large tensor with a fresh ``mmap`` and unmaps it on free, so the next update
    touches every page anew: 2.8M page faults and 16 → 10 s for the world-model half of one
    atari update on the 2-core VM (docs/SPEED.md). With ``mmap`` off and trimming at its
    maximum, freed blocks stay in the heap and are reused; the process's resident memory
    then stays at its peak (4.2 → 5.5 GiB at atari). Process-wide and idempotent; a no-op
    (False) off glibc or with ``REVERIE_KEEP_FREED_MEMORY=0``.
    """
    global _MALLOC_KEPT
    if _MALLOC_KEPT or os.environ.get("REVERIE_KEEP_FREED_MEMORY", "1") == "0":
        return _MALLOC_KEPT
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    _MALLOC_KEPT = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    return _MALLOC_KEPT


def legacy_rng_to_dict(state: tuple) -> dict[str, Any]:
    """A legacy numpy ``RandomState.get_state()`` tuple as named plain values (``keys`` stays
    an array): the one conversion, used for the envs' generators and numpy's global one."""
    name, keys, pos, has_gauss, gauss = state
    return {"name": name, "keys": keys, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}


def legacy_rng_from_dict(state: dict[str, Any] | list) -> tuple:
    """Inverse of ``legacy_rng_to_dict``; also takes the 5-item list older checkpoints hold."""
    if isinstance(state, dict):
        state = [state["name"], state["keys"], state["pos"], state["has_gauss"], state["gauss"]]
    name, keys, pos, has_gauss, gauss = state
    return name, np.asarray(keys, np.uint32), int(pos), int(has_gauss), float(gauss)
