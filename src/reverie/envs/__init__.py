"""Environments behind one protocol (docs/ARCHITECTURE.md "Environment", docs/ENVIRONMENTS.md).

``make_env(config, mode)`` builds ``config.task`` (``make_envs`` the run's ``run.envs`` training
envs, in worker processes with ``env.parallel=process``): ``atari_<rom>``, ``dmc_<domain>_<task>``,
``gym_<id>`` or a name added with ``register(name, factory)``. Optional suites are imported
lazily, so this package imports without ale-py or dm-control.
"""

from reverie.envs.base import Env, action_dim
from reverie.envs.parallel import ProcessEnv, call_all
from reverie.envs.registry import (
    env_seed,
    eval_seed,
    format_tasks,
    list_tasks,
    make_env,
    make_envs,
    register,
    train_seed,
)

__all__ = ["Env", "make_env", "make_envs", "register", "action_dim", "list_tasks", "format_tasks", "env_seed",
           "eval_seed", "train_seed", "ProcessEnv", "call_all"]
