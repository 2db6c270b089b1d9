"""The MinAtar study of issue #17, one run at a time, resumable across sittings.

    nohup .venv/bin/python benchmarks/minatar_study.py > runs/minatar/study.log 2>&1 &

Runs ``reverie train --task minatar_<game> --preset minatar --seed S --logdir
runs/minatar/<game>/<S> --steps STEPS`` in ``ORDER`` (Breakout and Space Invaders at seed 0,
the other three games, then Breakout and Space Invaders at seeds 1 and 2), ``--jobs`` at a
time (default 1), each with one torch/OpenMP thread: on the 2-core machine it was sized for,
``--jobs 2`` uses both cores. Idempotent: a run
whose ``status.json`` says finished at ``STEPS`` or more is skipped, an unfinished one is
resumed from its newest checkpoint (``reverie train`` resumes an existing logdir). A lock
file keeps a second copy from starting; ``kill <pid>`` of this script stops its current runs
too (SIGTERM is passed on). Each sitting of each run is appended to its
``sittings.jsonl`` (start, end, steps before and after, host, CPU, load), which
``benchmarks/minatar_collect.py`` turns into wall time and machine in the results.

``runs/`` is not in git: on a fresh checkout (or another machine) an unfinished run starts
again from step 0, and a finished one is known only by what ``minatar_collect.py`` recorded.
So plan a sitting in whole runs (about 90 min per run on one core of the 2-core VM, about
135 min for three runs on two cores) and pick them with ``--only``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = [("breakout", 0), ("space_invaders", 0), ("asterix", 0), ("freeway", 0), ("seaquest", 0),
         ("breakout", 1), ("breakout", 2), ("space_invaders", 1), ("space_invaders", 2)]
CHILDREN: list[subprocess.Popen] = []  # the running ``reverie train`` processes


def status(logdir: Path) -> dict:
    try:
        return json.loads((logdir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_one(game: str, seed: int, steps: int, runs: Path, reverie: str) -> int:
    logdir = runs / game / str(seed)
    before = status(logdir)
    if before.get("state") == "finished" and before.get("step", 0) >= steps:
        print(f"{now()} skip {game} seed {seed}: finished at {before['step']} steps", flush=True)
        return 0
    logdir.mkdir(parents=True, exist_ok=True)
    command = [reverie, "train", "--task", f"minatar_{game}", "--preset", "minatar", "--seed", str(seed),
               "--logdir", str(logdir), "--steps", str(steps)]
    sitting = {"start": now(), "host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(),
               "load_1m_start": round(os.getloadavg()[0], 2), "step_start": before.get("step", 0),
               "command": " ".join(command)}
    print(f"{sitting['start']} run {game} seed {seed} from step {sitting['step_start']}", flush=True)
    start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    CHILDREN.append(child)
    code = child.wait()
    after = status(logdir)
    sitting.update(end=now(), seconds=round(time.monotonic() - start, 1), step_end=after.get("step", 0),
                   load_1m_end=round(os.getloadavg()[0], 2), exit_code=code)
    with open(logdir / "sittings.jsonl", "a") as file:
        file.write(json.dumps(sitting) + "\n")
    print(f"{sitting['end']} {game} seed {seed}: exit {code} at step {sitting['step_end']}", flush=True)
    return code


def parse_only(text: str) -> list[tuple[str, int]]:
    """``"asterix:0,freeway:0"`` -> ``[("asterix", 0), ("freeway", 0)]``, each checked against ``ORDER``."""
    picked = []
    for item in text.split(","):
        game, _, seed = item.strip().partition(":")
        if not seed.isdigit() or (game, int(seed)) not in ORDER:
            known = ", ".join(f"{g}:{s}" for g, s in ORDER)
            raise ValueError(f"--only: {item.strip()!r} is not a run of the study; pick from {known}")
        picked.append((game, int(seed)))
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=250_000, help="agent steps per run")
    parser.add_argument("--runs", default="runs/minatar", help="root of the run directories")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one core each")
    parser.add_argument("--only", default="", metavar="GAME:SEED,...",
                        help="run just these, in this order (e.g. asterix:0,freeway:0); default: all of ORDER")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        order = parse_only(args.only) if args.only else list(ORDER)
    except ValueError as error:
        parser.error(str(error))
    runs = (ROOT / args.runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    lock = open(runs / ".study.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another minatar_study.py holds {runs / '.study.lock'}; not starting a second", file=sys.stderr)
        return 1
    reverie = str(Path(sys.executable).with_name("reverie"))
    # `kill <pid of this script>` stops its runs too (each resumes from its last checkpoint).
    signal.signal(signal.SIGTERM, lambda *_: [child.terminate() for child in CHILDREN])
    queue, failed = order, threading.Event()

    def worker() -> None:
        while not failed.is_set():
            try:
                game, seed = queue.pop(0)
            except IndexError:
                return
            if run_one(game, seed, args.steps, runs, reverie):
                # A crash or a kill: start nothing new, so the next sitting resumes this run first.
                print(f"stopping: {game} seed {seed} exited; rerun this script to resume", flush=True)
                failed.set()

    with ThreadPoolExecutor(args.jobs) as pool:
        workers = [pool.submit(worker) for _ in range(args.jobs)]
    for done in workers:
        done.result()  # a worker's own exception (not a run's exit code) is raised here, not lost
    if failed.is_set():
        return 1
    print(f"{now()} study complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
