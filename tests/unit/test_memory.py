"""``keep_freed_memory``: glibc keeps freed blocks for reuse (no page faults per update)."""

import os
import platform
import subprocess
import sys

import pytest

CODE = "from reverie.utils import keep_freed_memory as k; print(k(), k())"


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REVERIE_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["REVERIE_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_is_on_by_default_and_idempotent():
    assert _run(None).split() == ["True", "True"]


def test_keep_freed_memory_can_be_switched_off():
    assert _run("0").split() == ["False", "False"]
