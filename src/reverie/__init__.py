"""Reverie: DreamerV2 (Hafner et al., ICLR 2021) in PyTorch.

Public entry points are imported lazily so that ``import reverie`` and ``reverie --help``
work without the optional environment suites installed.

Importing it changes nothing process-wide; the entry points apply the runtime settings
(``reverie.runtime``: OpenMP wait policy, threads, memory reuse, TF32).
"""

from reverie.config import Config, ConfigError, load_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "load_config", "make_env", "Agent", "__version__"]


def __getattr__(name: str):
    if name == "make_env":
        from reverie.envs import make_env

        return make_env
    if name == "Agent":
        from reverie.agent import Agent

        return Agent
    raise AttributeError(f"module 'reverie' has no attribute {name!r}")
