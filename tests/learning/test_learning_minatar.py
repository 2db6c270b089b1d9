"""Proof of learning on a MinAtar game (slow; `make test-all`): a real `reverie train` at the
`minatar` preset plays Breakout at five times the random policy's return, the issue's bar.

Threshold and budget come from the recorded run of the same command at this preset (grid
encoder and decoder, actor entropy linear(1e-2,1e-3,50000); seed 0, 2026-12-04, the first
80k steps of `benchmarks/results/learning/minatar_pilots/minatar_breakout_grid_etasched/0/`,
which is also the second MinAtar study's Breakout seed 0): its training episodes averaged
0.39 over steps 0–10k (random with the minimal action set: 0.38), 1.75 over 20k–30k, 2.49,
2.50, 2.75, 2.87 and 2.73 over 70k–80k (284 episodes), with evaluations of 3.0–3.2 from 50k.
The bar is 5 × 0.38 = 1.9 over the training episodes of 70k–80k, about a third below the
recorded run there. Training episodes include the preset's ε-greedy 0.1 and the actor's
sampling, so they understate the policy; there are over a hundred of them per 10k steps,
which makes them steadier than five eval episodes.

Run end to end on the final tree of 2026-12-05 (2-core Intel Xeon VM, one thread, one sweep run
beside it): passed in 28.3 min, 0.39 over 0–10k and 2.73 over 70k–80k (284 episodes), the
recorded run's numbers to the digit (the CPU path is deterministic at one thread).

Since 2026-12-06 the preset's windows cross episodes (`replay.cross_episodes`); the numbers
above are from the preset before. Its Breakout pilot with the option
(`minatar_pilots/minatar_breakout_cross/0/`, stopped at 70k) returned 3.33 over its training
episodes of 55k–70k, against 2.79–3.14 for the preset's seeds. The third study's Breakout seed 0
(the same command but `--steps 250000`, `runs/minatar/minatar/minatar_breakout/0`, 2026-12-06, AMD
EPYC VM) read 0.42 over 0–10k (966 episodes) and 4.08 over 70k–80k (198 episodes): the bar 1.9
holds with room. Run end to end at the new preset on 2026-12-07 (AMD EPYC VM, one thread, the
sweep's two runs beside it): passed in 35.8 min, 0.42 over 0–10k and 4.08 over 70k–80k (198
episodes), the study run's numbers to the digit.

The preset before that (MLP encoder, η = 1e-2) read 2.95 over the same window (2026-12-02, 56 min
beside 3 other runs on the 2-core VM); the recorded run above took 43 min to 80k steps
beside one other run.
"""

import time
from pathlib import Path

import numpy as np
import pytest
from learning_runs import train, training_returns

pytest.importorskip("minatar")
pytestmark = pytest.mark.slow

RANDOM_BREAKOUT = 0.38  # uniform random policy, the preset's minimal action set (data/minatar_reference.csv)
STEPS = 80_000  # agent steps trained: ~35–45 min on one core of the 2-core VM (the recorded run: 32 ms per step beside one other run)
WINDOW = (70_000, 80_000)  # training episodes that end in this step range are averaged
THRESHOLD = 5 * RANDOM_BREAKOUT


def training_return(metrics: Path, first: int, last: int) -> tuple[float, int]:
    """Mean ``episode/return`` of the training episodes ending in ``(first, last]``, and their count."""
    returns = training_returns(metrics, first, last)
    return float(np.mean(returns)) if returns else float("nan"), len(returns)


@pytest.mark.timeout(5700)  # above the run's own 5400 s (the suite's default of 900 s would cut it)
def test_minatar_breakout_learns_five_times_random(tmp_path):
    logdir = tmp_path / "breakout"
    start = time.time()
    train(logdir, "minatar_breakout", "minatar", STEPS, timeout=5400)
    mean, episodes = training_return(logdir / "metrics.jsonl", *WINDOW)
    early, _ = training_return(logdir / "metrics.jsonl", 0, 10_000)
    print(f"MinAtar Breakout: {(time.time() - start) / 60:.1f} min; training return {early:.2f} over 0–10k, "
          f"{mean:.2f} over {WINDOW[0] // 1000}k–{WINDOW[1] // 1000}k ({episodes} episodes)")
    assert episodes >= 100, episodes
    assert early < 2 * RANDOM_BREAKOUT, early  # it learned: the start is near random
    assert mean >= THRESHOLD, (mean, episodes)
