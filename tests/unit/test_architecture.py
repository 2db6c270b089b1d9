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
