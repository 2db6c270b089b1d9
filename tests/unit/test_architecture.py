"""The forbidden arrows of docs/ARCHITECTURE.md, read from the source's import statements:
the models do not know environments, the training loop or the tools, and the building
blocks (`nn`) do not know the config schema."""

import ast
from pathlib import Path

import pytest

import reverie

SRC = Path(reverie.__file__).parent
FORBIDDEN = {
    "world_model": ("reverie.envs", "reverie.run", "reverie.cli", "reverie.sweep"),
    "behavior": ("reverie.envs", "reverie.run", "reverie.cli", "reverie.sweep"),
    "nn": ("reverie.envs", "reverie.run", "reverie.cli", "reverie.sweep", "reverie.config",
           "reverie.world_model", "reverie.behavior", "reverie.agent"),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_package_imports_nothing_it_must_not_know(package):
    files = sorted((SRC / package).glob("*.py"))
    assert files
    bad = [(f.name, name) for f in files for name in imported_modules(f)
           if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package])]
    assert not bad, f"{package} imports {bad}"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    # The test above must be able to fail: the same reader finds an import of envs.
    module = tmp_path / "m.py"
    module.write_text("from reverie.envs.base import action_dim\nimport reverie.config\n")
    assert imported_modules(module) == {"reverie.envs.base", "reverie.config"}


def test_import_and_agent_change_nothing_process_wide():
    # In a fresh interpreter (the suite's conftest sets OMP_WAIT_POLICY for its own process):
    # importing reverie and building an Agent leave the environment, the umask, torch's
    # threads and the TF32 flags as they were; the entry points' runtime.configure sets them.
    import subprocess
    import sys

    code = """
import os, signal, torch, gymnasium, numpy as np
# Third-party settings first: gymnasium sets PYGAME_HIDE_SUPPORT_PROMPT at import, torch's
# fused Adam sets TORCHINDUCTOR_CACHE_DIR on first use. Only Reverie's own effects are tested.
torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
env, threads, sigterm = dict(os.environ), torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
mask = os.umask(0o027); os.umask(mask)
import reverie
from reverie.agent import Agent
config = reverie.load_config(["debug"], ["device=cpu", "threads=1"])
agent = Agent(config, {"vector": gymnasium.spaces.Box(-1, 1, (3,), np.float32)}, gymnasium.spaces.Discrete(2))
agent.policy({"vector": np.zeros((1, 3), np.float32), "is_first": np.ones(1, bool)})
from reverie.utils import atomic_write_text
import tempfile; atomic_write_text(tempfile.mkdtemp() + "/x", "x")
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert torch.get_num_threads() == threads
new = os.umask(0); os.umask(new); assert new == mask, (new, mask)
assert not torch.backends.cuda.matmul.allow_tf32
from reverie import runtime
assert signal.getsignal(signal.SIGTERM) is sigterm
with runtime.sigterm_stops():
    assert signal.getsignal(signal.SIGTERM) is not sigterm
assert signal.getsignal(signal.SIGTERM) is sigterm
runtime.prepare_process(); runtime.configure(config)
assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and torch.get_num_threads() == 1
print("ok")
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_sigterm_inside_sigterm_stops_raises_terminated_a_keyboard_interrupt():
    import os
    import signal
    import time

    from reverie import runtime

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runtime.Terminated, match="stopped by SIGTERM"), runtime.sigterm_stops():
        assert signal.getsignal(signal.SIGTERM) is not previous  # else the signal below ends pytest
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode, well before this ends
    assert issubclass(runtime.Terminated, KeyboardInterrupt)  # every Ctrl-C path handles it
    assert signal.getsignal(signal.SIGTERM) is previous
