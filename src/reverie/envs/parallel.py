"""One environment in a worker process (``ProcessEnv``), and one call on many envs at once (``call_all``).

Why: a run with ``run.envs`` > 1 steps every env once per agent step. In one process those
steps run one after another, and an env's step (MuJoCo physics and rendering, an emulator)
holds the CPU; in worker processes they run at the same time: ``call_all`` sends the call
to every worker first, then collects the replies in env order.

A worker is started with ``spawn``, a fresh interpreter: ``fork`` would copy the parent
mid-state (torch's thread pools, a CUDA context, locks other threads hold). It builds its env
from ``(task, config, seed)`` with ``registry.resolve`` and imports only what that env needs
(no torch unless the env imports it); so a task added with ``register()`` in the parent is
unknown there (``make_envs`` refuses it). As with any ``spawn``, each worker first imports
the parent's main module: a script that builds workers keeps its own work under
``if __name__ == "__main__":`` (the ``reverie`` command does; its module imports no torch).
Values cross the pipe pickled: observations, spaces, ``get_state`` dicts of numpy arrays and
plain values.

The pipe's protocol: the parent sends ``(method, args)``, the worker answers ``("ok", value)``
or ``("error", type name, one-line message, traceback)``, and the parent raises
``EnvWorkerError`` for the latter. A worker whose env raised keeps serving, as an env in this
process stays usable after refusing a bad action; the caller decides whether to go on. It
exits on ``("close", ())`` after closing its env, or on end-of-file of its pipe: the parent
closed it or died, so no worker outlives its parent's process. Workers ignore SIGINT (Ctrl-C
in a terminal reaches the whole process group; the parent decides, and closes them). A
worker that dies (killed, out of memory, a crash in native code) is noticed by the next
``receive`` within ``POLL_S``: it never waits on a dead worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from reverie.envs.base import Env, Obs
from reverie.errors import EnvWorkerError

_CONTEXT = multiprocessing.get_context("spawn")
METHODS = ("reset", "step", "render", "get_state", "set_state", "get_reset_state", "set_reset_state")
POLL_S = 0.1  # how often a waiting receive() checks that its worker is alive
CLOSE_S = 5.0  # how long close() lets the worker close its env and exit before terminating it


class ProcessEnv(Env):
    """``task``'s env built from ``(config, seed)`` in a worker process, behind the ``Env``
    protocol (each method forwards the call and waits for the reply), plus ``send``/``receive``
    to run one call on many workers at once (``call_all``). ``index`` (the env's place in the
    run) and the task name it in messages (``name``: "env worker 1 (gym_CartPole-v1)"); ``pid``
    is the worker's process id until ``close``.

    With ``wait=False`` the constructor returns once the worker is started and ``ready()``
    waits for its env (``make_envs`` starts every worker before waiting for any); the spaces
    are known after ``ready()``. Errors: ``EnvWorkerError`` (module docstring)."""

    def __init__(self, task: str, config: Any, seed: int, index: int = 0, *, wait: bool = True) -> None:
        self.task, self.index = task, index
        self.name = f"env worker {index} ({task})"
        self._closed, self._ready, self._failure = False, False, None
        self._conn, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(target=_work, args=(child, task, config, int(seed)),
                                         name=f"reverie {self.name}", daemon=True)
        try:
            with _sigint_blocked():
                self._process.start()
        finally:
            child.close()  # the worker's end lives only in the worker: its death reads as end-of-file here
        self._pending = True  # the worker's first message: its env's spaces, or why it could not build it
        if wait:
            self.ready()

    @property
    def pid(self) -> int | None:
        return self._process.pid if not self._closed else None

    def ready(self) -> None:
        """Waits until the worker has built its env and sets ``obs_space``/``act_space``;
        ``EnvWorkerError`` (and the worker closed) if it could not."""
        if self._ready:
            return
        try:
            self.obs_space, self.act_space = self._reply("could not build its env:")
            self._ready = True
        except BaseException:
            self.close()
            raise

    def send(self, method: str, *args: Any) -> None:
        """Starts ``method(*args)`` in the worker and returns at once; ``receive()`` gets its result."""
        if method not in METHODS:
            raise ValueError(f"{self.name}: unknown env method {method!r}; the methods are {', '.join(METHODS)}")
        if self._closed:
            raise RuntimeError(f"{self.name} is closed; build a new env")
        self.ready()
        if self._pending:
            raise RuntimeError(f"{self.name}: send({method!r}) before the last call's receive(); receive it first")
        if self._failure:
            raise EnvWorkerError(self._failure)
        try:
            self._conn.send((method, args))
        except OSError:  # a broken pipe: the worker is gone
            self._failure = self._death()
            raise EnvWorkerError(self._failure) from None
        self._pending = True

    def receive(self) -> Any:
        """The result of the call ``send`` started; ``EnvWorkerError`` if the env raised or the worker died."""
        if self._closed or not self._pending:
            raise RuntimeError(f"{self.name}: receive() without a send() before it")
        return self._reply("raised")

    def _reply(self, failed: str) -> Any:
        """The worker's next reply, its value or ``EnvWorkerError`` ("<name> <failed> <type>: <message>")."""
        if self._failure:
            raise EnvWorkerError(self._failure)
        try:
            while not self._conn.poll(POLL_S):
                if not self._process.is_alive() and not self._conn.poll(0):
                    raise EOFError
            reply = self._conn.recv()
        except (EOFError, OSError):  # a dead worker's end is closed: end-of-file or a reset pipe
            self._failure, self._pending = self._death(), False
            raise EnvWorkerError(self._failure) from None
        self._pending = False  # not before: after a Ctrl-C while waiting, the reply is still due
        if reply[0] == "ok":
            return reply[1]
        _, kind, message, trace = reply
        error = EnvWorkerError(f"{self.name} {failed} {kind}: {message}")
        error.add_note(f"in the worker (pid {self._process.pid}):\n{trace}")  # shown with a traceback only
        raise error

    def _death(self) -> str:
        """How the worker died, as the one line of an ``EnvWorkerError``."""
        self._process.join(1.0)  # reap it, for its exit code
        code = self._process.exitcode
        how = ("closed its pipe" if code is None else f"exited with code {code}" if code >= 0
               else f"was killed by {_signal_name(-code)}")
        hint = (" (out of memory?)" if code == -signal.SIGKILL
                else " (its traceback is on stderr)" if code is not None and code > 0 else "")
        return (f"{self.name} died: its process (pid {self._process.pid}) {how}{hint}; its env is lost, "
                "so close the envs and resume the run from its last checkpoint")

    def call(self, method: str, *args: Any) -> Any:
        """``method(*args)`` in the worker, waiting for its result."""
        self.send(method, *args)
        return self.receive()

    def reset(self) -> Obs:
        return self.call("reset")

    def step(self, action: np.ndarray | int) -> Obs:
        return self.call("step", action)

    def render(self) -> np.ndarray:
        return self.call("render")

    def get_state(self) -> dict[str, Any] | None:
        return self.call("get_state")

    def set_state(self, state: dict[str, Any]) -> None:
        self.call("set_state", state)

    def get_reset_state(self) -> dict[str, Any] | None:
        return self.call("get_reset_state")

    def set_reset_state(self, state: dict[str, Any]) -> None:
        self.call("set_reset_state", state)

    def close(self) -> None:
        """Asks the worker to close its env and exit, waits ``CLOSE_S``, then terminates it
        (SIGTERM, then SIGKILL) and reaps it. Idempotent; fine after the worker died."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # a dead worker's pipe is broken
            self._conn.send(("close", ()))
        self._process.join(CLOSE_S)
        if self._process.exitcode is None:
            self._process.terminate()
            self._process.join(1.0)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join()
        self._conn.close()
        self._process.close()


def call_all(envs: list[Env], method: str, args: list[tuple]) -> list[Any]:
    """``getattr(envs[i], method)(*args[i])`` for every env, the results in env order. The
    calls to ``ProcessEnv``s are sent first and run in their workers at the same time; envs in
    this process are called in order meanwhile. Every call sent is received before the first
    error (in env order) is raised, so no worker is left with an unread reply."""
    if len(args) != len(envs):
        raise ValueError(f"call_all: {len(args)} argument tuples for {len(envs)} envs; pass one per env")
    errors: dict[int, Exception] = {}
    for index, (env, arguments) in enumerate(zip(envs, args)):
        if isinstance(env, ProcessEnv):
            try:
                env.send(method, *arguments)
            except Exception as error:
                errors[index] = error
    results = []
    for index, (env, arguments) in enumerate(zip(envs, args)):
        try:
            if index not in errors:
                results.append(env.receive() if isinstance(env, ProcessEnv) else getattr(env, method)(*arguments))
        except Exception as error:
            errors[index] = error
    if errors:
        raise errors[min(errors)]
    return results


def close_all(envs: list[Env]) -> None:
    """Close every env (and its worker); the first error is raised once all were tried, so one
    failing close never leaves the others' workers running."""
    errors = []
    for env in envs:
        try:
            env.close()
        except Exception as error:  # noqa: BLE001 - close the others before raising
            errors.append(error)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while a worker starts. The worker inherits the mask, so a
    Ctrl-C during its start-up (imports, before ``_work`` ignores SIGINT) is dropped there
    instead of killing it with a traceback; here it is only delayed until the mask is restored.
    The start launches multiprocessing's resource tracker once per process, which unblocks SIGINT
    after starting it (the same trick, for its own process): it is started first."""
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _work(conn: Connection, task: str, config: Any, seed: int) -> None:
    """The worker's main: build the env, then answer calls until ``close`` or end-of-file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # drops a SIGINT held by the inherited mask, too
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from reverie.envs.registry import resolve

    try:
        factory = resolve(task)
        _quiet_ale(task)
        env = factory(config, seed)
        conn.send(("ok", (env.obs_space, env.act_space)))
    except Exception as error:
        with contextlib.suppress(OSError):
            conn.send(_error_reply(error))
        return
    try:
        _serve(conn, env)
    finally:
        env.close()
        conn.close()


def _quiet_ale(task: str) -> None:
    """The ALE's logger at errors only, as the entry points set it in their own process
    (``reverie.runtime``): else each worker prints the ALE's banner to the run's stderr."""
    if task.startswith("atari_"):
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def _serve(conn: Connection, env: Env) -> None:
    """Answers ``(method, args)`` calls; an env's error is a reply, and the loop goes on."""
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the parent closed its end, or died
            return
        if method == "close":
            return
        try:
            reply = ("ok", getattr(env, method)(*args))
        except Exception as error:
            reply = _error_reply(error)
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return
        except Exception as error:  # the value does not pickle; pickling fails before anything is written
            conn.send(_error_reply(error))


def _error_reply(error: Exception) -> tuple[str, str, str, str]:
    """``("error", type name, the message as one line, the formatted traceback)``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "error", type(error).__name__, "; ".join(lines) or "(no message)", "".join(traceback.format_exception(error))
