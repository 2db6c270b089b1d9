"""Random-policy environment speed of atari_pong and dmc_walker_walk on this machine.

Usage: ``python -m benchmarks.env_speed [--atari-steps N] [--dmc-steps N]``. Writes
``benchmarks/results/speed/<hostname>-<date>-envs.json`` with the machine (CPU, cores, torch,
ale-py, mujoco, dm-control versions) and ``reverie.envs.speed.bench_env`` results.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import socket
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control is imported

from benchmarks import cpu_model  # noqa: E402
from reverie.envs.speed import bench_env  # noqa: E402


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    return {"hostname": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform(), "mujoco_gl": os.environ.get("MUJOCO_GL"),
            "load_average_1m": round(os.getloadavg()[0], 2),  # other processes skew the speeds
            **{name: version(name) for name in ("torch", "ale-py", "gymnasium", "mujoco", "dm-control")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atari-steps", type=int, default=20_000)
    parser.add_argument("--dmc-steps", type=int, default=1_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "speed"))
    args = parser.parse_args()
    results = [bench_env("atari_pong", args.atari_steps), bench_env("dmc_walker_walk", args.dmc_steps)]
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
              "results": results}
    path = Path(args.out) / f"{socket.gethostname()}-{datetime.date.today()}-envs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
