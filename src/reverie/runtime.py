"""Process-wide settings, in one place, applied only by the entry points.

Importing ``reverie`` or building an ``Agent`` changes nothing global. The entry points
(the ``reverie`` CLI, and through it the sweep's workers; ``reverie.run.train.train``;
``reverie bench``; ``reverie eval``) call:

- ``prepare_process(config)`` before torch is imported: ``OMP_WAIT_POLICY`` from
  ``config.wait`` (``PASSIVE`` without a config), unless the user set it. OpenMP threads that
  spin while waiting made torch 10–100× slower on CPU as soon as another process competed for
  the cores (a small update 13 s instead of 0.2 s on 2 busy cores); passive waiting costs
  a wake-up per op, which only small models on an idle machine notice (``gym,cartpole``
  spins: ``wait: active``). OpenMP reads it once, when torch loads it, so the CLI calls this
  again once it knows the config, before any import of torch; a library user sets it in the
  environment or calls this first.
- ``configure(config)`` once the run's config is known: glibc keeps freed memory on the CPU
  (``utils.keep_freed_memory``: no page faults on every large activation), ``config.threads``
  sets torch's CPU threads, and on CUDA fp32 matmuls and convolutions use TF32 tensor cores
  (as the official TF2 code gets by default on Ampere and later).
- ``acting_threads(device)`` around each policy call of a loop: on the CPU acting runs on
  one thread (batch 1: every op is tiny, and splitting it across threads only adds a
  synchronisation per op, which stalls for a scheduler slice whenever another process holds
  a core; measured 7× slower at load 5 on 2 cores).
- ``sigterm_stops()`` around a run (``reverie.run.train.train``): SIGTERM (``kill``, a
  scheduler, a container stop) raises ``Terminated``, a ``KeyboardInterrupt``, so the run
  unwinds as on Ctrl-C and records where it stopped; the previous handler is restored after.

docs/SPEED.md has the measurements behind each setting.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_USER_WAIT = os.environ.get("OMP_WAIT_POLICY")  # the user's own setting, read at import


def prepare_process(config: Any = None) -> None:
    """Settings that must precede ``import torch``; an explicit user setting wins. Without a
    config: passive waiting, unless set already; with one (before torch loads): its ``wait``."""
    if _USER_WAIT is not None:
        return
    if config is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    elif not _torch_loaded():
        os.environ["OMP_WAIT_POLICY"] = config.wait.upper()


def wait_policy() -> str:
    """The OpenMP wait policy this process runs with (``passive`` unless it was set otherwise)."""
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE").lower()


def _torch_loaded() -> bool:
    import sys

    return "torch" in sys.modules


def configure(config: Any) -> None:
    """The run's process-wide settings: memory reuse and threads on the CPU, TF32 on CUDA."""
    import torch

    from reverie.utils import keep_freed_memory, resolve_device

    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_freed_memory()
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextmanager
def acting_threads(device: Any) -> Iterator[None]:
    """One CPU thread inside the block (for batch-1 policy calls); the count is restored after."""
    import torch

    threads = torch.get_num_threads()
    single = getattr(device, "type", device) == "cpu" and threads > 1
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(threads)


class Terminated(KeyboardInterrupt):
    """SIGTERM inside ``sigterm_stops()``: a request to stop, handled as Ctrl-C is."""


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """Inside the block SIGTERM raises ``Terminated`` in the main thread instead of ending the
    process on the spot; the previous handler is restored after. Python lets only the main
    thread set handlers: in another thread the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:  # None: a handler set outside Python, which cannot be put back; the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
