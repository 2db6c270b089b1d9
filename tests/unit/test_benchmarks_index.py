"""``benchmarks/README.md`` indexes every tool under ``benchmarks/``, and every tool imports as
``benchmarks.<...>`` without running anything (each runs only under ``__main__``). A module
whose name starts with ``_`` (``__init__``, ``diagnostics/_common``) is what tools share, not a tool."""

import importlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p.relative_to(ROOT / "benchmarks") for p in (ROOT / "benchmarks").rglob("*.py")
               if not p.name.startswith("_"))


def test_there_are_tools_to_check():
    assert Path("record_study.py") in TOOLS and Path("diagnostics/minatar_heads.py") in TOOLS
    assert Path("diagnostics/_common.py") not in TOOLS and (ROOT / "benchmarks/diagnostics/_common.py").exists()


@pytest.mark.parametrize("tool", TOOLS, ids=str)
def test_every_tool_is_in_the_readme_with_how_to_run_it(tool):
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    module = "benchmarks." + ".".join(tool.with_suffix("").parts)
    assert f"| `{tool.as_posix()}` |" in readme, f"{tool} has no row in benchmarks/README.md"
    assert f"python -m {module}" in readme or "make " in readme.split(f"| `{tool.as_posix()}` |")[1].split("\n")[0]


@pytest.mark.parametrize("tool", TOOLS, ids=str)
def test_every_tool_imports_without_running(tool):
    module = "benchmarks." + ".".join(tool.with_suffix("").parts)
    importlib.import_module(module)  # the project's own imports must work: no skip
    source = (ROOT / "benchmarks" / tool).read_text()
    assert 'if __name__ == "__main__":' in source


def test_no_tool_edits_sys_path():
    hits = subprocess.run(["grep", "-rln", "sys.path.insert\\|sys.path.append", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True).stdout.split()
    assert [h for h in hits if not h.startswith("benchmarks/results/")] == []
