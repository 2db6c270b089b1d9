"""What the slow learning tests share: one ``reverie train`` run in a subprocess, and the
returns of its training episodes in a window of agent steps."""

import json
import subprocess
import sys
from pathlib import Path


def train(logdir: Path, task: str, preset: str, steps: int, timeout: float) -> None:
    """``reverie train`` of ``task`` at ``preset``, seed 0, on the CPU, into ``logdir``."""
    subprocess.run([sys.executable, "-m", "reverie", "train", "--task", task, "--preset", preset, "--seed", "0",
                    "--steps", str(steps), "--logdir", str(logdir), "--set", "device=cpu"],
                   check=True, timeout=timeout, stdout=subprocess.DEVNULL)


def training_returns(metrics: Path, first: int, last: int) -> list[float]:
    """``episode/return`` of the training episodes ending in ``(first, last]``."""
    return [row["episode/return"] for row in map(json.loads, metrics.read_text().splitlines())
            if "episode/return" in row and first < row["step"] <= last]
