"""``reverie.runtime``'s scoped settings: each sets what it says inside its block and puts it
back after. The fresh-interpreter checks that nothing else changes them are in
test_architecture.py."""

import os
import threading

import pytest
import torch

from reverie import runtime
from reverie.config import load_config


@pytest.fixture
def ale_modes(monkeypatch):
    """The modes given to the ALE's logger, in order (ale-py cannot report the current one),
    from runtime's default: an in-process ``reverie.cli.main`` of an earlier test leaves Error."""
    ale_py = pytest.importorskip("ale_py")
    monkeypatch.setattr(runtime, "_ale_mode", "Info")
    modes = []
    set_mode = ale_py.ALEInterface.setLoggerMode
    monkeypatch.setattr(ale_py.ALEInterface, "setLoggerMode",
                        staticmethod(lambda mode: (modes.append(mode.name), set_mode(mode))[1]))
    return modes


def test_run_settings_set_the_runs_settings_and_put_each_back(monkeypatch, ale_modes):
    for name in ("MUJOCO_GL", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    hook, deterministic = threading.excepthook, torch.are_deterministic_algorithms_enabled()
    assert not deterministic
    config = load_config(["atari"], ["task=atari_pong", "deterministic=true"])
    with runtime.run_settings(config):
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == runtime.CUBLAS_DETERMINISTIC
        assert threading.excepthook is not hook and ale_modes == ["Error"]
        assert "MUJOCO_GL" not in os.environ  # not a dmc task
    assert not torch.are_deterministic_algorithms_enabled() and threading.excepthook is hook
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and ale_modes == ["Error", "Info"]

    with runtime.run_settings(load_config(["dmc"], ["task=dmc_walker_walk"])):
        assert os.environ["MUJOCO_GL"] in ("egl", "osmesa") and not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert "MUJOCO_GL" not in os.environ and ale_modes == ["Error", "Info"]  # no ALE for a dmc task


def test_run_settings_leave_a_users_own_settings(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with runtime.run_settings(load_config(["dmc"], ["task=dmc_walker_walk", "deterministic=true"])):
        assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_quiet_ale_puts_back_the_mode_runtime_set_last(ale_modes):
    with runtime.quiet_ale():
        assert ale_modes == ["Error"]
    assert ale_modes == ["Error", "Info"]
    runtime.prepare_process(load_config(["atari"], ["task=atari_pong"]))  # the CLI: for the whole process
    with runtime.quiet_ale():
        pass
    assert ale_modes == ["Error", "Info", "Error", "Error", "Error"]


def test_torch_settings_restored_puts_back_threads_and_tf32():
    threads = torch.get_num_threads()
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    with runtime.torch_settings_restored():
        torch.set_num_threads(threads + 1)
        torch.backends.cuda.matmul.allow_tf32 = not flags[0]
        torch.backends.cudnn.allow_tf32 = not flags[1]
    assert torch.get_num_threads() == threads
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == flags


def test_deterministic_algorithms_keep_the_callers_setting_when_not_asked():
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with runtime.deterministic_algorithms(False):
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


class _AsyncWriterThread(threading.Thread):
    """Named as TensorBoard's event writer thread."""


def test_quiet_writer_thread_errors_drops_only_the_writers_failed_writes(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append((args.thread.name, args.exc_type)))

    def fail(error):
        raise error

    def run(cls, error):
        thread = cls(target=fail, args=(error,), name=cls.__name__)
        thread.start()
        thread.join()

    with runtime.quiet_writer_thread_errors():
        run(_AsyncWriterThread, OSError(28, "No space left on device"))  # raised again in the main thread
        run(_AsyncWriterThread, ValueError("a bug"))
        run(threading.Thread, OSError(5, "I/O error"))
    run(_AsyncWriterThread, OSError(28, "No space left on device"))
    assert seen == [("_AsyncWriterThread", ValueError), ("Thread", OSError), ("_AsyncWriterThread", OSError)]
