"""Envs in worker processes (``reverie.envs.parallel``) and the run's training envs
(``make_envs``, ``train_seed``): the same numbers as in this process, and every fault (an env
that raises, a worker killed, an env that cannot be built, the parent killed) ends in one
line, with no process left behind. Real envs and real processes throughout."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reverie.config import load_config
from reverie.envs import ProcessEnv, call_all, eval_seed, make_env, make_envs, register, registry, train_seed
from reverie.errors import EnvWorkerError, TaskError

CARTPOLE = "gym_CartPole-v1"


def config(task=CARTPOLE, seed=3):
    if task.startswith("minatar_"):
        return load_config("minatar", [f"task={task}", f"seed={seed}"])
    return load_config(None, [f"task={task}", f"seed={seed}", "env.action_repeat=1"])


def state(pid: int) -> str | None:
    """The process's state letter in ``/proc`` (``R``, ``S``, ``T`` stopped, ``Z`` zombie), ``None`` if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def gone(pid: int) -> bool:
    """The process has exited (a zombie that an init which does not reap keeps counts as exited)."""
    return state(pid) in ("Z", None)


def assert_no_workers_left(*pids):
    assert multiprocessing.active_children() == []
    assert all(gone(pid) for pid in pids)


def play(env, actions, reset=True):
    """The observations of ``actions``, a reset first (with ``reset``) and after each episode's end."""
    out = [env.reset()] if reset else []
    for action in actions:
        out.append(env.step(action))
        if out[-1]["is_last"]:
            out.append(env.reset())
    return out


def assert_same(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert np.array_equal(x[key], y[key]), key


@pytest.mark.parametrize("task", [CARTPOLE, "minatar_breakout"])
def test_a_worker_s_env_is_the_in_process_env_and_its_state_crosses_the_pipe(task):
    if task.startswith("minatar_"):
        pytest.importorskip("minatar")
    cfg = config(task)
    worker, local = ProcessEnv(task, cfg, 5, index=1), registry.resolve(task)(cfg, 5)
    try:
        assert worker.obs_space == local.obs_space and worker.act_space == local.act_space
        assert not any("libtorch" in line for line in Path(f"/proc/{worker.pid}/maps").read_text().splitlines())
        rng = np.random.default_rng(0)
        n = worker.act_space.n
        actions = list(rng.integers(n, size=60))
        assert_same(play(worker, actions), play(local, actions))
        # out: the worker's state, set into a fresh env here, continues as the worker does
        restored = registry.resolve(task)(cfg, 9)
        restored.set_state(worker.get_state())
        more = [np.eye(n, dtype=np.float32)[i] for i in rng.integers(n, size=20)]
        assert_same(play(worker, more, reset=False), play(restored, more, reset=False))
        # in: the worker takes the state of the env here after they went apart
        apart = play(worker, [0] * 3, reset=False)[-1], play(local, [n - 1] * 3, reset=False)[-1]
        assert not np.array_equal(apart[0]["vector"], apart[1]["vector"]), "the test cannot tell them apart"
        worker.set_state(local.get_state())
        assert_same(play(worker, more, reset=False), play(local, more, reset=False))
    finally:
        worker.close()
        local.close()
    assert_no_workers_left()


def test_train_seeds():
    assert train_seed(3, 0) == 3 and isinstance(train_seed(np.int64(3), 0), int)
    seeds = [train_seed(3, index) for index in range(1, 5)]
    assert seeds == [train_seed(3, index) for index in range(1, 5)]  # deterministic
    assert len({3, *seeds}) == 5 and all(0 <= s < 2**31 for s in seeds)
    assert train_seed(3, 1) != eval_seed(3, 1)  # a stream of its own
    assert train_seed(3, 1) != train_seed(4, 1)


def test_make_envs_in_workers_are_the_envs_in_process_and_call_all_keeps_their_order():
    cfg = config()
    workers, local = make_envs(cfg, 2, "process"), make_envs(cfg, 2, "none")
    pids = [worker.pid for worker in workers]
    try:
        assert [type(env) for env in workers] == [ProcessEnv, ProcessEnv] and [w.index for w in workers] == [0, 1]
        assert not any(isinstance(env, ProcessEnv) for env in local)
        first = call_all(workers, "reset", [(), ()])
        assert_same(first, [env.reset() for env in local])
        assert np.array_equal(first[0]["vector"], make_env(cfg).reset()["vector"])  # env 0: the run's seed
        assert not np.array_equal(first[0]["vector"], first[1]["vector"])  # env 1: another
        for t in range(5):
            actions = [(t % 2,), (1 - t % 2,)]
            assert_same(call_all(workers, "step", actions), [env.step(*a) for env, a in zip(local, actions)])
        mixed = [workers[0], local[1]]  # a worker and an env here, in one call
        assert_same(call_all(mixed, "get_state", [(), ()]), [workers[0].get_state(), local[1].get_state()])
    finally:
        for env in workers + local:
            env.close()
    assert_no_workers_left(*pids)


@pytest.mark.timeout(60)
def test_an_env_error_in_the_worker_is_one_line_and_the_worker_goes_on():
    worker = ProcessEnv(CARTPOLE, config(), 3, index=1)
    local = make_env(config())
    try:
        worker.reset(), local.reset()
        with pytest.raises(EnvWorkerError) as error:
            worker.step(7)
        assert str(error.value) == "env worker 1 (gym_CartPole-v1) raised TaskError: discrete action index 7 outside [0, 2)"
        assert "Traceback" in error.value.__notes__[0]  # the worker's, for a traceback; not in the line
        os.kill(worker.pid, signal.SIGINT)  # Ctrl-C in a terminal: the parent decides, not the worker
        time.sleep(0.2)
        assert np.array_equal(worker.step(1)["vector"], local.step(1)["vector"])  # still serving
        with pytest.raises(EnvWorkerError, match=r"raised TaskError: discrete action must be a one-hot vector"):
            call_all([worker, local], "step", [(np.zeros(5),), (0,)])  # the worker raised; the env here stepped
        worker.step(0)  # its error reply was read: no reply is due
        assert np.array_equal(worker.step(1)["vector"], local.step(1)["vector"])
    finally:
        worker.close()
    assert_no_workers_left()


@pytest.mark.timeout(60)
def test_a_killed_worker_is_noticed_at_once_and_closes():
    workers = make_envs(config(), 2, "process")
    pid = workers[1].pid
    try:
        call_all(workers, "reset", [(), ()])
        os.kill(pid, signal.SIGSTOP)  # stopped, so it dies with the step pending, not after replying
        while state(pid) != "T":
            time.sleep(0.01)
        workers[1].send("step", 0)
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(EnvWorkerError) as error:
            workers[1].receive()
        assert time.monotonic() - start < 3
        assert str(error.value).startswith(
            f"env worker 1 (gym_CartPole-v1) died: its process (pid {pid}) was killed by SIGKILL (out of memory?);")
        with pytest.raises(EnvWorkerError, match="died"):  # and every later call
            call_all(workers, "step", [(0,), (0,)])
        assert workers[0].step(0)["vector"].shape == (4,)  # the other one goes on
    finally:
        for env in workers:
            env.close()
            env.close()  # idempotent
    assert_no_workers_left(pid)
    with pytest.raises(RuntimeError, match="is closed"):
        workers[0].step(0)


@pytest.mark.timeout(60)
def test_an_env_that_cannot_be_built_fails_at_construction_as_one_line():
    with pytest.raises(EnvWorkerError) as error:
        ProcessEnv("minatar_nope", config(), 0, index=2)
    assert str(error.value).startswith("env worker 2 (minatar_nope) could not build its env: TaskError: ")
    assert "\n" not in str(error.value)
    assert_no_workers_left()
    with pytest.raises(TaskError, match="unknown task"):  # make_envs: before any worker starts
        make_envs(config("gym_Nope-v0"), 2, "process")


@pytest.mark.timeout(60)
def test_a_worker_ends_when_its_parent_is_killed():
    code = ("from reverie.config import load_config; from reverie.envs import ProcessEnv\n"
            f"env = ProcessEnv({CARTPOLE!r}, load_config(None, ['task={CARTPOLE}']), 0)\n"
            "print(env.pid, flush=True); import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert not gone(pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid), "the worker outlived its parent"


def test_a_task_registered_from_python_stays_in_this_process():
    register("toy_cartpole", lambda cfg, seed: registry.resolve(CARTPOLE)(cfg, seed))
    try:
        with pytest.raises(TaskError, match="registered from Python.*set env.parallel=none"):
            make_envs(config("toy_cartpole"), 2, "process")
        envs = make_envs(config("toy_cartpole"), 2, "none") + make_envs(config("toy_cartpole"), 1, "process")
        assert not any(isinstance(env, ProcessEnv) for env in envs)  # one env never gets a worker
    finally:
        registry._CUSTOM.pop("toy_cartpole")
    assert_no_workers_left()
