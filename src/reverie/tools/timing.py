"""`reverie bench`: how fast is one update, one policy call, and what does 200M frames cost?

Builds the agent at a preset with a synthetic replay batch of the right shapes (Atari:
uint8 ``[B, L, 64, 64, 1]``, 18 one-hot actions) and measures, after warm-up:

- median ms per world-model update, actor-critic update, full ``Agent.train`` call, and
  ``Agent.policy`` call for ``envs`` environments (``--envs N``, default 1), made as the
  training loop's Driver makes it: one call for all N observations inside
  ``runtime.acting_threads`` (its threads are recorded), episodes under way (``is_first``
  only on the untimed first call);
- the same call right after the weights changed, as the loop's first call after an update
  (under bf16 the policy then re-casts its cached bf16 weights: ``agent._ActingCopy``);
- FLOPs of one ``Agent.train`` (``torch.utils.flop_counter``, forward + backward), the
  achieved FLOP/s, and the peak of a large matmul in the same precision timed in the same
  run (a measured, not a datasheet, peak);
- parameter counts, peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA);
- acting's share of one agent step with N envs (``acting_ms_per_agent_step``): one call per N
  agent steps, of which one in ``max(1, train_every / N)`` comes right after an update;
- the projected wall time of the paper's 200M frames: 12.5M × (update + 4 × (acting per agent
  step + env step)) with the paper's one update per 4 agent steps and N envs, the env step
  measured for the task by ``reverie.envs.speed.bench_env`` (one env, counted whole per
  agent step: the overlap of N worker processes is not assumed);
- the cost of one agent step at the preset's own train ratio: update × train_steps ÷
  train_every + acting per agent step + env step, and the seconds per 1,000 agent steps it
  adds up to (the figure a small preset's user waits for; a regression in any part shows here).

CUDA timings synchronise before reading the clock (kernels are asynchronous).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import socket
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from reverie import runtime
from reverie.agent import Agent
from reverie.config import Config, load_config
from reverie.errors import ReverieError
from reverie.tools.params import parameter_counts, task_spaces
from reverie.utils import atomic_write_text, resolve_device

# The paper's budget (Table 3): 200M frames at action repeat 4 = 50M agent steps, one update
# every 4 agent steps = 12.5M updates.
PAPER_FRAMES, PAPER_ACTION_REPEAT, PAPER_TRAIN_EVERY = 200_000_000, 4, 4
PAPER_UPDATES = PAPER_FRAMES // PAPER_ACTION_REPEAT // PAPER_TRAIN_EVERY


def synthetic_batch(config: Config, obs_space: dict, act_space, seed: int = 0) -> dict[str, np.ndarray]:
    """A replay batch ``[B, L, ...]`` of random values with the replay's keys and dtypes."""
    rng = np.random.default_rng(seed)
    shape = (config.replay.batch, config.replay.length)
    batch = {k: rng.integers(0, 256, (*shape, *s.shape), dtype=np.uint8) if s.dtype == np.uint8
             else rng.normal(size=(*shape, *s.shape)).astype(np.float32) for k, s in obs_space.items()}
    if isinstance(act_space, gymnasium.spaces.Discrete):
        batch["action"] = np.eye(act_space.n, dtype=np.float32)[rng.integers(0, act_space.n, shape)]
    else:
        batch["action"] = rng.uniform(-1, 1, (*shape, *act_space.shape)).astype(np.float32)
    batch["reward"] = rng.normal(size=shape).astype(np.float32)
    batch["is_first"] = np.zeros(shape, bool)
    batch["is_first"][:, 0] = True
    batch["is_last"] = np.zeros(shape, bool)
    batch["is_terminal"] = np.zeros(shape, bool)
    return batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> list[float]:
    """Wall milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(repeats):
        timed(times, device, fn)
    return times


def timed(out: list[float], device: torch.device, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, appending its wall milliseconds to ``out`` (CUDA synchronised)."""
    synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    synchronize(device)
    out.append((time.perf_counter() - start) * 1e3)
    return result


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """``(FLOPs, result)`` of one call of ``fn``, forward and backward passes included.

    Counted on the eager code: torch.compile refuses to trace under the counter's dispatch
    mode (a ``fullgraph`` function raises), and the compiled graph does the same matmuls."""
    counter = FlopCounterMode(display=False)
    with torch.compiler.set_stance("force_eager"), counter:
        result = fn()
    return counter.get_total_flops(), result


def matmul_peak(device: torch.device, precision: str, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a ``size``² matmul in the benchmarked precision: the machine's usable peak."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = min(time_ms(lambda: a @ b, repeats, device))
    return 2 * size**3 / (best / 1e3)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated CUDA memory, or the process's peak RSS on CPU (Linux reports KiB)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_info(device: torch.device) -> dict[str, Any]:
    """Hostname, CPU (and GPU) model, threads, torch version and the load at the time."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"hostname": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "wait": runtime.wait_policy(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_1m": round(os.getloadavg()[0], 2)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["name"] = f"{info['hostname']} ({info.get('gpu', cpu)})"
    return info


def run_bench(config: Config, updates: int = 5, env_task: str | None = None, env_steps: int = 2000,
              policy_calls: int = 100, envs: int = 1) -> dict[str, Any]:
    """Every measurement of the module docstring, as one JSON-able dict; ``envs``: the N of the
    timed policy call."""
    device = resolve_device(config.device)
    runtime.configure(config)  # the process-wide settings of a training run
    load_at_start = round(os.getloadavg()[0], 2)  # other processes on a shared machine skew timings
    obs_space, act_space = task_spaces(config, env_task)  # the timed task's own spaces
    torch.manual_seed(config.seed)
    agent = Agent(config, obs_space, act_space)
    batch = synthetic_batch(config, obs_space, act_space, config.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # Counting runs the real kernels: it is also the warm-up.
    wm_flops, (post, _) = count_flops(lambda: agent.train_world_model(batch))
    ac_flops, _ = count_flops(lambda: agent.train_behavior(post, batch["is_terminal"]))
    flops = {"total": wm_flops + ac_flops, "world_model": wm_flops, "actor_critic": ac_flops}
    # One more warm-up: the first update after the FLOP counter ran 7–15 % slower (vm, atari).
    train_ms = time_ms(lambda: agent.train(batch), updates, device, warmup=1)
    wm_ms, ac_ms = [], []
    for _ in range(updates):
        post = timed(wm_ms, device, agent.train_world_model, batch)[0]
        timed(ac_ms, device, agent.train_behavior, post, batch["is_terminal"])

    acting = time_policy(agent, batch, policy_calls, envs)
    env = _bench_env(env_task or config.task, env_steps)
    peak = matmul_peak(device, config.precision)
    medians = {"world_model": statistics.median(wm_ms), "actor_critic": statistics.median(ac_ms),
               "train": statistics.median(train_ms), "policy": statistics.median(acting["policy"]),
               "policy_after_update": statistics.median(acting["policy_after_update"])}
    achieved = flops["total"] / (medians["train"] / 1e3)
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": {**machine_info(device), "load_average_1m_start": load_at_start},
        "device": device.type, "precision": config.precision, "compile": config.compile,
        "batch": config.replay.batch, "length": config.replay.length, "horizon": config.behavior.horizon,
        "envs": envs, "acting_threads": acting["threads"],
        "repeats": {"train": updates, "world_model": updates, "actor_critic": updates, "policy": policy_calls,
                    "policy_after_update": len(acting["policy_after_update"])},
        "median_ms": {k: round(v, 3) for k, v in medians.items()},
        "all_ms": {"train": train_ms, "world_model": wm_ms, "actor_critic": ac_ms},
        "flops_per_update": flops,
        "achieved_flops_per_s": achieved, "peak_flops_per_s": peak, "fraction_of_peak": achieved / peak,
        "parameters": parameter_counts(config, obs_space, act_space),
        "peak_memory_bytes": peak_memory_bytes(device),
        "env": env,
        **step_costs(medians, env["env_step_ms"], config.run.train_every, config.run.train_steps, envs),
    }


def step_costs(medians: dict[str, float], env_step_ms: float, train_every: int, train_steps: int,
               envs: int) -> dict[str, Any]:
    """The 200M-frame projection (the paper's ratio) and one agent step at the preset's ratio,
    both with ``envs`` envs acting together, from the median timings (ms)."""

    def act(every: int) -> float:
        return acting_ms_per_agent_step(medians["policy"], medians["policy_after_update"], envs, every)

    cycle_ms = medians["train"] + PAPER_TRAIN_EVERY * (act(PAPER_TRAIN_EVERY) + env_step_ms)
    step_ms = medians["train"] * train_steps / train_every + act(train_every) + env_step_ms
    return {
        "projection": {"frames": PAPER_FRAMES, "updates": PAPER_UPDATES, "envs": envs, "ms_per_update_cycle": cycle_ms,
                       "days": PAPER_UPDATES * cycle_ms / 1e3 / 86400},
        "agent_step": {"train_every": train_every, "train_steps": train_steps, "envs": envs,
                       "policy_ms_per_env_step": medians["policy"] / envs, "acting_ms": act(train_every),
                       "ms": step_ms, "sec_per_1k_steps": step_ms},  # ms per step × 1,000 steps ÷ 1,000 ms per s
    }


def acting_obs(batch: dict[str, np.ndarray], envs: int) -> dict[str, np.ndarray]:
    """One observation ``[envs, ...]`` per env: the first step of the synthetic batch's sequences
    (repeated when there are fewer sequences than envs), ``is_first`` set as an episode start."""
    rows = np.arange(envs) % batch["is_first"].shape[0]
    return {k: v[rows, 0] for k, v in batch.items() if k not in ("action", "is_terminal")}


def time_policy(agent: Agent, batch: dict[str, np.ndarray], calls: int, envs: int = 1) -> dict[str, Any]:
    """The policy for ``envs`` environments as the training loop's Driver calls it: one call for
    all observations inside ``runtime.acting_threads``, in train mode, the episodes under way
    after an untimed first call at their start. Returns the milliseconds of ``calls`` calls
    (``policy``), of calls each right after every weight changed (``policy_after_update``: what
    the policy caches from the weights is rebuilt), and the torch threads the calls ran on."""
    device = agent.device
    start = acting_obs(batch, envs)
    obs = {**start, "is_first": np.zeros(envs, bool)}
    state, threads = None, set()

    def act(step_obs: dict[str, np.ndarray]) -> None:
        nonlocal state
        with runtime.acting_threads(device):
            threads.add(torch.get_num_threads())
            state = agent.policy(step_obs, state, "train")[1]

    act(start)
    policy_ms = time_ms(lambda: act(obs), calls, device, warmup=5)
    after_ms: list[float] = []
    for _ in range(max(3, calls // 5)):
        _weights_changed(agent)
        timed(after_ms, device, act, obs)
    return {"policy": policy_ms, "policy_after_update": after_ms, "threads": sorted(threads)}


def _weights_changed(agent: Agent) -> None:
    """Every weight an update changes written in place with its own value, outside the acting
    block as an optimizer step writes them: the values stay, their version counters advance."""
    with torch.no_grad():
        for weight in (*agent.world_model.parameters(), *agent.behavior.parameters()):
            weight.mul_(1)


def acting_ms_per_agent_step(policy_ms: float, after_update_ms: float, envs: int, train_every: int) -> float:
    """Acting's share of one agent step: one policy call per ``envs`` agent steps, and the weights
    change after the rounds in which an update is due (every ``train_every`` agent steps, at most
    once per round), so one call in ``max(1, train_every / envs)`` is a first call after an update."""
    calls = max(1.0, train_every / envs)
    return (after_update_ms + (calls - 1) * policy_ms) / calls / envs


def _bench_env(task: str, steps: int) -> dict[str, Any]:
    from reverie.envs.speed import bench_env

    result = bench_env(task, steps)
    return {**result, "env_step_ms": 1e3 / result["agent_steps_per_s"]}


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary printed by `reverie bench`."""
    ms, p, env, envs = result["median_ms"], result["parameters"], result["env"], result["envs"]
    threads = "/".join(map(str, result["acting_threads"])) + (" thread" if result["acting_threads"] == [1] else " threads")
    rows = [
        ("machine", result["machine"]["name"]),
        ("device / precision / compile", f"{result['device']} / {result['precision']} / {result['compile']}"),
        ("threads, wait / load (1 min, start→end)", f"{result['machine']['torch_threads']}, "
         f"{result['machine'].get('wait', 'passive')} / "
         f"{result['machine']['load_average_1m_start']}→{result['machine']['load_average_1m']}"),
        ("world-model update", f"{ms['world_model']:.1f} ms (median of {result['repeats']['world_model']})"),
        ("actor-critic update", f"{ms['actor_critic']:.1f} ms (median of {result['repeats']['actor_critic']})"),
        ("Agent.train", f"{ms['train']:.1f} ms (median of {result['repeats']['train']})"),
        (f"policy, batch {envs}, {threads}", f"{ms['policy']:.2f} ms per call = "
         f"{ms['policy'] / envs:.2f} ms per env step (median of {result['repeats']['policy']})"),
        ("policy, first call after an update", f"{ms['policy_after_update']:.2f} ms "
         f"(median of {result['repeats']['policy_after_update']})"),
        ("FLOPs per update", f"{result['flops_per_update']['total'] / 1e9:.1f} GFLOP"),
        ("achieved / measured peak", f"{result['achieved_flops_per_s'] / 1e9:.0f} / "
         f"{result['peak_flops_per_s'] / 1e9:.0f} GFLOP/s ({result['fraction_of_peak']:.0%})"),
        ("parameters", f"{p['total'] / 1e6:.2f}M (actor {p['actor'] / 1e6:.2f}M, critic {p['critic'] / 1e6:.2f}M)"),
        ("peak memory", f"{result['peak_memory_bytes'] / 2**30:.2f} GiB"),
        (f"env step ({env['task']})", f"{env['env_step_ms']:.3f} ms"),
        ("per agent step (train_every {train_every}, train_steps {train_steps}, {envs} envs)".format(
            **result["agent_step"]),
         f"{result['agent_step']['ms']:.2f} ms (acting {result['agent_step']['acting_ms']:.2f}) = "
         f"{result['agent_step']['sec_per_1k_steps']:.1f} s per 1,000 agent steps"),
        (f"200M frames projected ({envs} envs)", f"{result['projection']['days']:.1f} days"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def bench_config(args: argparse.Namespace) -> Config:
    """The preset and ``--set`` overrides, then the explicit flags."""
    overrides = list(args.set)
    overrides += [f"device={args.device}"] if args.device else []
    overrides += [f"precision={args.precision}"] if args.precision else []
    overrides += ["compile=true"] if args.compile else []
    return load_config(args.preset, overrides)


def cli_bench(args: argparse.Namespace) -> int:
    config = bench_config(args)
    # This command's process: the settings of the env it times too (dm-control's renderer, the ALE's logger).
    runtime.prepare_process(dataclasses.replace(config, task=args.env_task or config.task))
    if args.json:
        read_runs(args.json)  # refuse an unusable --json file before minutes of measuring
    result = run_bench(config, args.updates, args.env_task, args.env_steps, envs=args.envs)
    print(format_table(result))
    if args.json:
        append_run(args.json, result)
    return 0


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """The ``runs`` of a results file, ``[]`` when it does not exist yet. A file that exists but
    is not a results file (empty, not JSON, no ``runs`` list) is an error and stays untouched."""
    path = Path(path)
    if not path.exists():
        return []
    problem = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            problem = 'it has no "runs" list'
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = "empty" if path.is_file() and path.stat().st_size == 0 else " ".join(str(error).split())
    if problem:
        raise ReverieError(f"--json {path} exists but is not a `reverie bench` results file ({problem}); "
                           "it was left unchanged: give another file name, or move it away")
    return data["runs"]


def append_run(path: str | Path, result: dict[str, Any]) -> None:
    """Append ``result`` to the ``runs`` of a results file (one file per machine and date
    holds every configuration run there), atomically: a failed write keeps the old file."""
    runs = read_runs(path)
    atomic_write_text(Path(path), json.dumps({"runs": [*runs, result]}, indent=2) + "\n")
