"""Test-suite set-up shared by every test folder."""

import os

from reverie.runtime import headless_gl

# What the Makefile exports and the CLI sets for its own process (``reverie.runtime``), set
# before any test module imports torch or dm-control (the subprocesses of the integration
# tests inherit them): passive OpenMP waiting, so tests stay fast when other processes share
# the CPU; a headless MuJoCo renderer for the tests that build DMC envs in this process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "MUJOCO_GL" not in os.environ:
    os.environ["MUJOCO_GL"] = headless_gl()
