"""The layers of docs/ARCHITECTURE.md, checked on the source's import statements.

The test reads the numbered list under ``## Layers`` (top line first) and checks its two rules
on every import of ``src/reverie`` (function-level and ``TYPE_CHECKING`` ones included): a
module imports only modules on lines below its own (or its own package), and below the
``agent``'s line nothing but ``config`` itself names ``reverie.config.Config``. Every top-level
module and package is on exactly one line.
"""

import ast
import re
from pathlib import Path

import pytest

import reverie

SRC = Path(reverie.__file__).parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
BUILDER = "agent"  # the one place below the loop that reads the whole Config and builds the parts
ITEM = re.compile(r"^\d+\.\s+((?:`[\w.]+`,\s*)*`[\w.]+`)\s+—")


def read_layers(doc: Path = DOC) -> list[list[str]]:
    """The names on each line of the ``## Layers`` list, top line first."""
    text = doc.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers = [re.findall(r"`([\w.]+)`", match.group(1))
              for line in section.splitlines() if (match := ITEM.match(line))]
    assert layers, f"no numbered layer list under '## Layers' in {doc}"
    return layers


def entries(src: Path) -> set[str]:
    """Top-level modules (``agent``, ``__init__``) and packages (``nn``) of the source tree."""
    return {p.stem for p in src.glob("*.py")} | {p.parent.name for p in src.glob("*/__init__.py")}


def entry_of(path: Path, src: Path) -> str:
    parts = path.relative_to(src).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported(path: Path, src: Path) -> set[str]:
    """The project's entries a file imports (``from reverie import runtime``: ``runtime``;
    ``import reverie``: ``__init__``); relative imports are resolved."""
    package = ["reverie", *path.relative_to(src).parts[:-1]]
    known = entries(src)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            module = ".".join(filter(None, [base, node.module or ""]))
            names = [f"{module}.{alias.name}" for alias in node.names] if module == "reverie" else [module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "reverie":
                found.add(parts[1] if len(parts) > 1 and parts[1] in known else "__init__")
    return found


def layer_violations(src: Path, layers: list[list[str]]) -> list[str]:
    """Every import of a module on its own line or above it (a package's own imports excepted)."""
    line = {name: index for index, names in enumerate(layers) for name in names}
    bad = []
    for path in sorted(src.rglob("*.py")):
        source = entry_of(path, src)
        for target in sorted(imported(path, src) - {source}):
            if source not in line or target not in line:
                bad.append(f"{path.relative_to(src)} imports {target}: {source if source not in line else target} "
                           "is on no line of the layer list")
            elif line[target] <= line[source]:
                bad.append(f"{path.relative_to(src)} (line {line[source] + 1}) imports {target} (line {line[target] + 1})")
    return bad


def config_names(src: Path, layers: list[list[str]]) -> list[str]:
    """Files below the builder's line (``config``, which defines it, excepted) that name ``Config``."""
    builder = next(index for index, names in enumerate(layers) if BUILDER in names)
    below = {name for names in layers[builder + 1:] for name in names} - {"config"}
    bad = []
    for path in sorted(src.rglob("*.py")):
        if entry_of(path, src) not in below:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = (isinstance(node, ast.ImportFrom) and any(a.name == "Config" for a in node.names)
                     or isinstance(node, ast.Name) and node.id == "Config"
                     or isinstance(node, ast.Attribute) and node.attr == "Config")
            if named:
                bad.append(f"{path.relative_to(src)}:{node.lineno}")
    return bad


def test_every_module_is_on_exactly_one_line_of_the_layer_list():
    names = [name for names in read_layers() for name in names]
    assert sorted(names) == sorted(set(names)), "a name on two lines"
    assert set(names) == entries(SRC), (f"not in docs/ARCHITECTURE.md's layers: {entries(SRC) - set(names)}; "
                                        f"listed but absent: {set(names) - entries(SRC)}")


def test_modules_import_only_the_lines_below_their_own():
    assert not layer_violations(SRC, read_layers())


def test_nn_imports_nothing_of_the_project_above_it():
    # Implied by the test above; stated on its own as the layer list's first promise.
    layers = read_layers()
    nn_line = next(index for index, names in enumerate(layers) if "nn" in names)
    below = {name for names in layers[nn_line + 1:] for name in names}
    above = {target for path in (SRC / "nn").glob("*.py") for target in imported(path, SRC)} - below - {"nn"}
    assert not above, f"nn imports {above}"
    assert "schedules" not in below and "config" not in below  # nn takes numbers, not settings


def test_nothing_below_the_agent_names_the_whole_config():
    assert not config_names(SRC, read_layers())


def test_the_checks_see_a_forbidden_import(tmp_path):
    # The tests above must be able to fail: a tree with an upward arrow (nn → schedules, by a
    # function-level import), an arrow within a line (world_model → behavior, relative) and a
    # part below the agent that names Config.
    src = tmp_path / "reverie"
    for package in ("nn", "world_model", "behavior"):
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").write_text("")
    for module in ("schedules", "config", "agent", "__init__"):
        (src / f"{module}.py").write_text("")
    (src / "nn" / "optim.py").write_text("def f():\n    from reverie.schedules import parse_schedule\n")
    (src / "world_model" / "model.py").write_text("from ..behavior import actor_critic\n"
                                                  "from reverie.config import Config, WorldModelConfig\n")
    (src / "agent.py").write_text("from reverie import config\nfrom reverie.config import Config\n")
    layers = [["__init__"], ["agent"], ["world_model", "behavior"], ["config"], ["schedules"], ["nn"]]
    assert layer_violations(src, layers) == ["nn/optim.py (line 6) imports schedules (line 5)",
                                             "world_model/model.py (line 3) imports behavior (line 3)"]
    assert config_names(src, layers) == ["world_model/model.py:2"]


# Run in a fresh interpreter: the process-wide state the library must leave alone, read
# before and after. Third-party settings come first, so that only Reverie's own effects are
# tested: gymnasium sets PYGAME_HIDE_SUPPORT_PROMPT at import, torch's fused Adam
# TORCHINDUCTOR_CACHE_DIR on first use, OpenCV LD_LIBRARY_PATH at import; dm-control chooses its renderer when imported (from
# MUJOCO_GL, which is removed after, so that a write by Reverie shows) and sets
# PYOPENGL_PLATFORM. ale-py cannot report its logger mode: its setter records each call.
PURITY_PRELUDE = """
import importlib.util, os, signal, sys, tempfile, threading
from pathlib import Path
import gymnasium, numpy as np, torch
from torch.utils.tensorboard import SummaryWriter
torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
SUITES = {name for name in ("ale_py", "dm_control", "minatar") if importlib.util.find_spec(name)}
if importlib.util.find_spec("cv2"):
    import cv2
if "dm_control" in SUITES:
    import dm_control.suite
del os.environ["MUJOCO_GL"]
ale_modes = []
if "ale_py" in SUITES:
    import ale_py
    set_mode = ale_py.ALEInterface.setLoggerMode
    ale_py.ALEInterface.setLoggerMode = staticmethod(lambda mode: (ale_modes.append(mode), set_mode(mode))[1])
torch.set_num_threads(2)  # not the runs' threads=1, so that a change shows

def umask():
    mask = os.umask(0o027)
    os.umask(mask)
    return mask

def state():
    return {"environ": dict(os.environ), "threading.excepthook": threading.excepthook,
            "sys.excepthook": sys.excepthook, "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "tf32": (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                     torch.get_float32_matmul_precision()),
            "ale_logger_calls": list(ale_modes), "umask": umask(),
            "signals": {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}}

def changes(before):
    after = state()
    diff = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    if "environ" in diff:
        diff["environ"] = set(before["environ"].items()) ^ set(after["environ"].items())
    return diff

before = state()
import reverie
"""

# Each env family installed, a MetricsLogger, seeding and one Agent update.
LIBRARY_USE = """
from reverie.agent import Agent
from reverie.envs import make_env
from reverie.report.metrics import MetricsLogger
from reverie.tools.timing import synthetic_batch
from reverie.utils import atomic_write_text, seed_everything
families = [("gym", "gym_CartPole-v1")] + [(preset, task) for package, preset, task in [
    ("ale_py", "atari", "atari_pong"), ("dm_control", "dmc", "dmc_cartpole_swingup"),
    ("minatar", "minatar", "minatar_breakout")] if package in SUITES]
for preset, task in families:
    env = make_env(reverie.load_config([preset], [f"task={task}"]), "train")
    env.reset()
    env.step(env.act_space.sample())
    env.close()
logger = MetricsLogger(Path(tempfile.mkdtemp()), 1)
logger.write(1, {"loss": 1.0}, 0.1)
logger.close()
atomic_write_text(tempfile.mkdtemp() + "/x", "x")
seed_everything(0)
config = reverie.load_config(["gym", "debug"], ["device=cpu", "threads=1", "deterministic=true"])
spaces = {"vector": gymnasium.spaces.Box(-1, 1, (4,), np.float32)}, gymnasium.spaces.Discrete(2)
agent = Agent(config, *spaces)
agent.policy({"vector": np.zeros((1, 4), np.float32), "is_first": np.ones(1, bool)})
metrics = agent.train(synthetic_batch(config, *spaces))
assert metrics and not any(value for key, value in metrics.items() if key.endswith("_skipped")), metrics
assert not changes(before), changes(before)
print("ok")
"""

# A whole (tiny, deterministic) run through the entry point: what it set is put back.
TRAIN_RUN = """
from reverie.run.train import train
config = reverie.load_config(["gym", "debug"], [
    "task=gym_CartPole-v1", "device=cpu", "threads=1", "deterministic=true", "run.steps=120",
    "run.prefill=100", "run.pretrain=1", "run.log_every=100", "run.eval_every=0", "run.checkpoint_every=1000"])
inside = {}
import reverie.run.train as loop
learn = loop.Trainer.learn
def spy(self, updates):
    inside.update(changes(before))
    return learn(self, updates)
loop.Trainer.learn = spy
summary = train(config, Path(tempfile.mkdtemp()) / "run", quiet=True)
assert summary["step"] == 120, summary
# It did set them for the run: SIGTERM stops it, deterministic algorithms, one thread, the
# writer thread's hook, cuBLAS's workspace.
assert {"signals", "deterministic", "threads", "threading.excepthook", "environ"} <= inside.keys(), inside
assert not changes(before), changes(before)
print("ok")
"""


def run_purity_check(code: str) -> None:
    import os
    import subprocess
    import sys

    # The suite's conftest sets OMP_WAIT_POLICY and MUJOCO_GL for its own process: the child
    # starts without the variables Reverie's entry points set (MUJOCO_GL only for dm-control's import).
    names = ("OMP_WAIT_POLICY", "CUBLAS_WORKSPACE_CONFIG", "PYOPENGL_PLATFORM", "RAY_USAGE_STATS_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.setdefault("MUJOCO_GL", "egl")
    result = subprocess.run([sys.executable, "-c", PURITY_PRELUDE + code], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_library_use_changes_nothing_process_wide():
    """Importing reverie, building an env of every installed family, a MetricsLogger, seeding,
    an Agent's policy call and update leave the environment, the excepthooks, torch's
    deterministic, thread and TF32 settings, the ALE's logger, the umask and the SIGTERM and
    SIGINT handlers as they were; only the entry points change them (``reverie.runtime``)."""
    run_purity_check(LIBRARY_USE)


def test_a_run_puts_back_what_it_set_process_wide():
    """``reverie.run.train.train`` sets SIGTERM's handler, deterministic algorithms, threads,
    the writer thread's hook and ``CUBLAS_WORKSPACE_CONFIG`` for the run, and puts each back
    when it returns (``runtime.run_settings``; glibc's memory reuse, not observable here, stays)."""
    run_purity_check(TRAIN_RUN)


def test_the_entry_points_own_settings():
    """What ``prepare_process`` and ``configure`` set for a process the entry point owns, and
    ``sigterm_stops`` inside its block."""
    import subprocess
    import sys

    code = """
import os, signal, torch, reverie
from reverie import runtime
sigterm = signal.getsignal(signal.SIGTERM)
with runtime.sigterm_stops():
    assert signal.getsignal(signal.SIGTERM) is not sigterm
assert signal.getsignal(signal.SIGTERM) is sigterm
config = reverie.load_config(["dmc"], ["device=cpu", "threads=1", "deterministic=true"])
runtime.prepare_process(); runtime.configure(config)
assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and torch.get_num_threads() == 1
runtime.prepare_process(config)
assert os.environ["MUJOCO_GL"] in ("egl", "osmesa") and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
print("ok")
"""
    names = ("OMP_WAIT_POLICY", "MUJOCO_GL", "CUBLAS_WORKSPACE_CONFIG")
    env = {k: v for k, v in __import__("os").environ.items() if k not in names}
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
