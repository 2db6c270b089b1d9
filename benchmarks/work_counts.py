"""Compare the work two source trees do per update, free of timing noise.

    python -m benchmarks.work_counts --before /tmp/before/src --after src --preset debug

Timings on a shared 2-core VM drift by more than the effects a refactor could cause (the
same `reverie bench` ranged 38–54 ms in one sitting). This counts instead, for one batch-1
``Agent.policy`` call and one ``Agent.train`` on a synthetic batch at ``--preset``: the
Python function calls (cProfile) and the aten ops (torch.profiler, by name). Each tree runs
in its own process (``PYTHONPATH=<tree>``); the output lists both counts and every aten op
whose count differs. Equal op lists mean the same kernels on the same shapes: any timing
difference is then Python overhead, which the call count bounds.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import pstats
import subprocess
import sys

CALLS = {"policy": 20, "train": 2}


def measure(preset: str) -> dict:
    """In this process (the tree on ``sys.path``): counts per policy call and per update."""
    import gymnasium
    import numpy as np
    import torch

    import reverie
    from reverie.agent import Agent

    config = reverie.load_config([preset], ["device=cpu"])
    try:
        from reverie import runtime

        runtime.configure(config)
    except ImportError:  # trees before reverie.runtime set the same in Agent.__init__
        pass
    obs_space = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
    agent = Agent(config, obs_space, gymnasium.spaces.Discrete(18))
    b, length = config.replay.batch, config.replay.length
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 255, (b, length, 64, 64, 1), dtype=np.uint8),
             "action": np.eye(18, dtype=np.float32)[rng.integers(18, size=(b, length))],
             "reward": rng.normal(size=(b, length)).astype(np.float32),
             **{key: np.zeros((b, length), bool) for key in ("is_first", "is_last", "is_terminal")}}
    batch["is_first"][:, 0] = True
    obs = {"image": batch["image"][:1, 0], "is_first": np.zeros(1, bool)}
    state = [None]

    def policy() -> None:
        state[0] = agent.policy(obs, state[0], "train")[1]

    def train() -> None:
        agent.train(batch)

    result = {}
    for name, fn in (("policy", policy), ("train", train)):
        fn(), fn()  # warm-up
        n = CALLS[name]
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            fn()
        profile.disable()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                fn()
        ops = collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::"))
        result[name] = {"python_calls": pstats.Stats(profile).total_calls // n,
                        "aten_ops": {op: count // n for op, count in ops.items()}}
    return result


def run_tree(tree: str, preset: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--measure", preset], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="the older tree's src/ directory")
    parser.add_argument("--after", default="src", help="the newer tree's src/ directory")
    parser.add_argument("--preset", default="debug")
    parser.add_argument("--measure", metavar="PRESET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    if not args.before:
        parser.error("--before is required: the src/ directory of the tree to compare against")
    sides = {"before": run_tree(args.before, args.preset), "after": run_tree(args.after, args.preset)}
    for part in CALLS:
        b, a = sides["before"][part], sides["after"][part]
        print(f"{part} (per call, preset {args.preset}): python calls {b['python_calls']} → {a['python_calls']}, "
              f"aten ops {sum(b['aten_ops'].values())} → {sum(a['aten_ops'].values())}")
        for op in sorted(set(b["aten_ops"]) | set(a["aten_ops"])):
            if b["aten_ops"].get(op, 0) != a["aten_ops"].get(op, 0):
                print(f"  {op}: {b['aten_ops'].get(op, 0)} → {a['aten_ops'].get(op, 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
