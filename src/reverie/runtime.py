"""Process-wide settings, in one place, applied only by the entry points.

Importing ``reverie``, building an env of any suite, a ``MetricsLogger`` or an ``Agent``,
seeding and training change nothing global (tests/unit/test_architecture.py checks each).
The entry points (the ``reverie`` CLI, and through it the sweep's workers;
``reverie.run.train.train``; ``reverie bench``; ``reverie eval``) call:

- ``prepare_process(config)`` first, for a process the entry point owns (the CLI's), not
  undone: what libraries read once, when they load or first start, so it must come first.

  - ``OMP_WAIT_POLICY`` from ``config.wait`` (``PASSIVE`` without a config), unless the user set
    it, before torch is imported. OpenMP threads that spin while waiting made torch 10–100×
    slower on CPU as soon as another process competed for the cores (a small update 13 s
    instead of 0.2 s on 2 busy cores); passive waiting costs a wake-up per op, which only
    small models on an idle machine notice (``gym,cartpole`` spins: ``wait: active``).
    OpenMP reads it once, when torch loads it, so the CLI calls this again once it knows the
    config, before any import of torch; a library user sets it in the environment or calls
    this first.
  - for a ``dmc_`` task, ``MUJOCO_GL`` (``headless_gl()``: ``egl``, ``osmesa`` when only
    OSMesa is installed), unless set: dm-control picks its renderer when it is imported, and
    its own first choice, GLFW, needs a display.
  - with ``config.deterministic``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, unless set: torch's
    deterministic algorithms refuse cuBLAS without it, and cuBLAS sizes its workspace once,
    at its first use, so it is set before CUDA starts.
  - for an ``atari_`` task, the ALE's logger at errors only: its banner and ROM report
    would otherwise go to stderr, where the CLI's one-line errors go.

- ``configure(config)`` once the run's config is known: glibc keeps freed memory on the CPU
  (``utils.keep_freed_memory``: no page faults on every large activation), ``config.threads``
  sets torch's CPU threads, and on CUDA fp32 matmuls and convolutions use TF32 tensor cores
  (as the official TF2 code gets by default on Ampere and later).
- ``run_settings(config)`` around a run (``reverie.run.train.train``): what the run sets
  process-wide, put back when it returns or raises. Inside it: SIGTERM stops the run
  (``sigterm_stops``); torch's deterministic algorithms are on with ``config.deterministic``;
  TensorBoard's writer thread stays quiet about a failed write (``quiet_writer_thread_errors``);
  the variables and the ALE logger of ``prepare_process`` are set where missing, for a library
  caller that did not call it. Torch's threads and TF32 flags, which ``configure`` sets inside
  it, are restored too. The one setting a run leaves behind is glibc's memory reuse, which
  cannot be undone (``REVERIE_KEEP_FREED_MEMORY=0`` turns it off).
- ``acting_threads(device)`` around each policy call of a loop: on the CPU acting runs on
  one thread (one call for the ``run.envs`` envs: every op is small, and splitting it across
  threads only adds a synchronisation per op, which stalls for a scheduler slice whenever
  another process holds a core; batch 1 measured 7× slower at load 5 on 2 cores, and at atari
  sizes one thread was faster than two at 1, 4 and 16 envs, docs/SPEED.md). ``reverie bench``
  times the policy inside the same block.
- ``sigterm_stops()`` (inside ``run_settings``): SIGTERM (``kill``, a scheduler, a container
  stop) raises ``Terminated``, a ``KeyboardInterrupt``, so the run unwinds as on Ctrl-C and
  records where it stopped; the previous handler is restored after.
- ``prepare_ray()`` before ``reverie sweep`` starts Ray.

docs/SPEED.md has the measurements behind the speed settings.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

_USER_WAIT = os.environ.get("OMP_WAIT_POLICY")  # the user's own setting, read at import
CUBLAS_DETERMINISTIC = ":4096:8"  # a workspace setting under which cuBLAS is deterministic (CUDA >= 10.2)


def prepare_process(config: Any = None) -> None:
    """The wait policy, ``library_environment(config)`` and the ALE's logger (module docstring)
    for the rest of this process; a user's own setting wins. Without a config, the wait policy."""
    if _USER_WAIT is None:
        if config is None:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        elif not _torch_loaded():
            os.environ["OMP_WAIT_POLICY"] = config.wait.upper()
    if config is None:
        return
    for name, value in library_environment(config).items():
        os.environ.setdefault(name, value)
    if _uses_ale(config):
        _set_ale_logger("Error")


def wait_policy() -> str:
    """The OpenMP wait policy this process runs with (``passive`` unless it was set otherwise)."""
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE").lower()


def _torch_loaded() -> bool:
    return "torch" in sys.modules


def library_environment(config: Any) -> dict[str, str]:
    """The environment variables a run of ``config`` needs that are not set yet: ``MUJOCO_GL``
    for a ``dmc_`` task, ``CUBLAS_WORKSPACE_CONFIG`` with ``deterministic``."""
    values = {}
    if config.task.startswith("dmc_") and "MUJOCO_GL" not in os.environ:
        values["MUJOCO_GL"] = headless_gl()
    if config.deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        values["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC
    return values


def headless_gl() -> str:
    """The MuJoCo renderer that needs no display: EGL, or OSMesa when only it is installed."""
    from ctypes.util import find_library

    return "osmesa" if not find_library("EGL") and find_library("OSMesa") else "egl"


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
def run_settings(config: Any) -> Iterator[None]:
    """A run's process-wide settings inside the block, each put back after it (module docstring)."""
    with ExitStack() as stack:
        stack.enter_context(sigterm_stops())
        stack.enter_context(torch_settings_restored())
        stack.enter_context(environment(library_environment(config)))
        stack.enter_context(deterministic_algorithms(config.deterministic))
        stack.enter_context(quiet_writer_thread_errors())
        if _uses_ale(config):
            stack.enter_context(quiet_ale())
        yield


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` inside the block; each name as it was after it."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def torch_settings_restored() -> Iterator[None]:
    """Torch's CPU threads and TF32 flags (what ``configure`` sets) as they were before the
    block, whatever it set."""
    import torch

    # Through the API configure sets them with: torch >= 2.9 refuses to read a flag set
    # through both its old (allow_tf32) and its new (fp32_precision) API.
    threads = torch.get_num_threads()
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Torch's deterministic algorithms on inside the block when ``enabled`` (exact resume
    tests; on CUDA also ``CUBLAS_WORKSPACE_CONFIG``, see ``prepare_process``); the previous
    setting after it. Not ``enabled``: the caller's setting stands."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


@contextmanager
def quiet_writer_thread_errors() -> Iterator[None]:
    """TensorBoard's event writer thread re-raises a failed write (``OSError``: disk full) in
    the thread, where ``threading.excepthook`` prints a traceback, and keeps it to raise again
    at the writer's next call in the main thread, where the run reports it in one line
    (``MetricsLogger.write``). Inside the block the first is not printed; every other thread
    error is, by the previous hook, which is restored after."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


_ale_mode = "Info"  # the ALE logger mode runtime last set; Info is the ALE's own default


def _uses_ale(config: Any) -> bool:
    return config.task.startswith("atari_") and importlib.util.find_spec("ale_py") is not None


def _set_ale_logger(mode: str) -> None:
    global _ale_mode
    import ale_py

    ale_py.ALEInterface.setLoggerMode(getattr(ale_py.LoggerMode, mode))
    _ale_mode = mode


@contextmanager
def quiet_ale() -> Iterator[None]:
    """The ALE's logger at errors only inside the block (set before the first interface: it
    prints its banner when created). ale-py cannot report its mode, so the one put back is
    the mode runtime set last: Info, the ALE's default, unless ``prepare_process`` ran."""
    previous = _ale_mode
    _set_ale_logger("Error")
    try:
        yield
    finally:
        _set_ale_logger(previous)


@contextmanager
def acting_threads(device: Any) -> Iterator[None]:
    """One CPU thread inside the block (for the loop's policy calls, one batch of all its envs);
    the count is restored after."""
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


def prepare_ray() -> None:
    """Before ``ray.init`` in ``reverie sweep``: Ray's usage statistics off unless the user
    chose (``RAY_USAGE_STATS_ENABLED``, read when Ray starts): no report leaves the machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
