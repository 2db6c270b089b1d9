"""Parity suite set-up: collected only where the official agent can be imported.

``make parity`` runs this folder in ``.venv-parity`` (TF 2.15 + ``dreamerv2==2.2.0`` + Reverie)
with ``REVERIE_PARITY=1``: there a failed import is an error, never a silent skip. In the main
venv (no TensorFlow) ``make test`` collects nothing here.

Every check records a row (quantity, largest absolute and relative difference, tolerance);
with ``REVERIE_PARITY_DOC=path`` a run in which every test passed writes them as the table
of ``docs/PARITY.md``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRED = os.environ.get("REVERIE_PARITY") == "1"
_MISSING = [name for name in ("tensorflow", "tensorflow_probability", "dreamerv2")
            if importlib.util.find_spec(name) is None]

if _MISSING:
    if REQUIRED:
        raise ImportError(
            f"REVERIE_PARITY=1 but {', '.join(_MISSING)} cannot be imported; "
            "run the parity suite with `make parity` (it builds .venv-parity)"
        )
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.parity.parity_table import ParityTable  # noqa: E402

    _TABLE = ParityTable()

    @pytest.fixture(scope="session")
    def table() -> ParityTable:
        return _TABLE

    def pytest_sessionfinish(session, exitstatus):
        path = os.environ.get("REVERIE_PARITY_DOC")
        if not path:
            return
        if exitstatus != 0 or session.testsfailed or not _TABLE.rows:
            print(f"\nparity: not writing {path}: the run did not pass in full")
            return
        _TABLE.write(path)
        print(f"\nparity: wrote {path} ({len(_TABLE.rows)} rows)")
