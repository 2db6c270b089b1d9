"""Agent steps per second of ``reverie train`` with ``run.envs`` = 1, 2, 4 (issue #32).

For each task and env count, two phases, each a real ``reverie train`` in a subprocess:
``prefill`` (random acting, no update: the env and the policy call, which still runs the
encoder and the RSSM on the batch) and ``learning`` (after prefill, at the preset's train
ratio). The rate is the ``fps`` the run logs over its last ``run.log_every`` interval (agent
steps per wall second, summed over the envs), so the workers' start is not in it. The runs
are taken one after the other in one sitting; the machine and its load go into the JSON.

    .venv/bin/python -m benchmarks.parallel_envs [--tasks dmc_walker_walk,atari_pong,minatar_breakout]
        [--envs 1,2,4] [--phases prefill,learning] [--out benchmarks/results/parallel_envs/FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import cpu_model

# Per task: the preset, the agent steps timed in each phase (the rate is read over the last
# half) and the extra settings. DMC learns at its own sizes (5 s per update on 2 cores), so
# its learning phase is short.
TASKS = {
    "dmc_walker_walk": ("dmc", {"prefill": 400, "learning": 80}),
    "atari_pong": ("atari", {"prefill": 4000, "learning": 160}),
    "minatar_breakout": ("minatar", {"prefill": 20000, "learning": 2000}),
}


def measure(task: str, envs: int, phase: str, parallel: str) -> dict:
    """One run; returns its agent steps/s over the last log interval and the run's wall time."""
    preset, steps = TASKS[task][0], TASKS[task][1][phase]
    log_every = steps // 2
    prefill = steps if phase == "prefill" else max(64, log_every // 2)
    total = steps if phase == "prefill" else prefill + steps
    with tempfile.TemporaryDirectory() as logdir:
        command = [sys.executable, "-m", "reverie", "train", "--task", task, "--preset", preset,
                   "--logdir", logdir, "--steps", str(total), "--set", f"run.envs={envs}",
                   "--set", f"env.parallel={parallel}", "--set", f"run.prefill={prefill}",
                   "--set", f"run.log_every={log_every}", "--set", "run.eval_every=0",
                   "--set", "run.checkpoint_every=100000000", "--set", "run.pretrain=1",
                   "--set", "replay.length=16", "--set", "replay.minlen=0", "--set", "replay.ongoing=true"]
        started = time.time()
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": "egl"})
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        records = [json.loads(line) for line in Path(logdir, "metrics.jsonl").read_text().splitlines()]
    rates = [r["fps"] for r in records if "fps" in r]
    return {"task": task, "envs": envs, "parallel": parallel, "phase": phase, "steps": steps,
            "steps_per_second": rates[-1], "wall_seconds": round(time.time() - started, 1)}


def machine() -> dict:
    return {"host": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(), "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--envs", default="1,2,4")
    parser.add_argument("--phases", default="prefill,learning")
    parser.add_argument("--parallel", default="process")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {"machine_start": machine(), "runs": []}
    for task in args.tasks.split(","):
        for phase in args.phases.split(","):
            base = None
            for envs in map(int, args.envs.split(",")):
                run = measure(task, envs, phase, args.parallel if envs > 1 else "none")
                base = base or run["steps_per_second"]
                run["speedup"] = round(run["steps_per_second"] / base, 2)
                results["runs"].append(run)
                print(f"{task:18} {phase:9} envs={envs}: {run['steps_per_second']:9.1f} agent steps/s "
                      f"({run['speedup']:.2f}x of 1 env), run {run['wall_seconds']} s", flush=True)
    results["machine_end"] = machine()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
