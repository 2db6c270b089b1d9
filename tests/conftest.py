"""Test-suite set-up shared by every test folder."""

import os

# As in `reverie/__init__.py`: passive OpenMP waiting, set before any test module imports
# torch, so tests stay fast when other processes share the CPU (the subprocesses of the
# integration tests inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
