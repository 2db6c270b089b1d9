"""`reverie bench` runs end to end at the debug preset and writes every promised field."""

import json

import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete

from reverie.cli import main
from reverie.config import load_config
from reverie.tools.params import parameter_counts

TIMES = {"world_model", "actor_critic", "train", "policy"}


def test_bench_debug_writes_every_field(tmp_path, capsys):
    path = tmp_path / "results" / "bench.json"
    args = ["bench", "--preset", "debug", "--updates", "2", "--env-steps", "50", "--json", str(path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "200M frames projected" in out and "s per 1,000 agent steps" in out
    assert main(args) == 0  # a second run appends to the same file
    runs = json.loads(path.read_text())["runs"]
    assert len(runs) == 2
    run = runs[0]
    assert {"hostname", "cpu", "torch", "torch_threads", "load_average_1m", "name"} <= set(run["machine"])
    assert run["device"] == "cpu" and run["precision"] == "fp32" and run["compile"] is False
    assert set(run["median_ms"]) == TIMES and all(v > 0 for v in run["median_ms"].values())
    assert run["repeats"]["train"] == 2 and run["repeats"]["policy"] > 0
    flops = run["flops_per_update"]
    assert flops["total"] == flops["world_model"] + flops["actor_critic"] > 0
    assert run["achieved_flops_per_s"] > 0 and run["peak_flops_per_s"] > 0
    assert run["fraction_of_peak"] == run["achieved_flops_per_s"] / run["peak_flops_per_s"]
    assert {"encoder", "rssm", "decoder", "actor", "critic", "total"} <= set(run["parameters"])
    assert run["peak_memory_bytes"] > 0
    assert run["env"]["task"] == "atari_pong" and run["env"]["env_step_ms"] > 0
    projection = run["projection"]
    assert projection["updates"] == 12_500_000 and projection["frames"] == 200_000_000
    cycle = run["median_ms"]["train"] + 4 * (run["median_ms"]["policy"] + run["env"]["env_step_ms"])
    assert abs(projection["ms_per_update_cycle"] - cycle) < 0.01  # medians are rounded to µs
    assert abs(projection["days"] - 12_500_000 * projection["ms_per_update_cycle"] / 1e3 / 86400) < 1e-9
    # The preset's own cost per agent step: debug trains once every 5 agent steps.
    step = run["agent_step"]
    assert (step["train_every"], step["train_steps"]) == (5, 1)
    per_step = run["median_ms"]["train"] / 5 + run["median_ms"]["policy"] + run["env"]["env_step_ms"]
    assert abs(step["ms"] - per_step) < 0.01 and abs(step["sec_per_1k_steps"] - per_step) < 0.01


def _bench(tmp_path, *args):
    path = tmp_path / "bench.json"
    assert main(["bench", *args, "--updates", "1", "--env-steps", "20", "--json", str(path)]) == 0
    return json.loads(path.read_text())["runs"][-1]


def test_bench_times_the_network_of_the_presets_task(tmp_path):
    # gym,cartpole: vector[4] and Discrete(2); before, a 64×64×3 image and 18 actions were timed.
    run = _bench(tmp_path, "--preset", "gym,cartpole")
    config = load_config("gym,cartpole")
    assert run["parameters"] == parameter_counts(config, {"vector": Box(-np.inf, np.inf, (4,), np.float32)},
                                                 Discrete(2))
    assert run["env"]["task"] == "gym_CartPole-v1" and run["batch"] == 16 and run["length"] == 32


def test_bench_bf16_with_another_env(tmp_path):
    # --env names the task that is timed: its env step and its spaces (Acrobot: 6 observations, 3 actions).
    run = _bench(tmp_path, "--preset", "debug", "--precision", "bf16", "--env", "gym_Acrobot-v1")
    assert run["precision"] == "bf16" and run["env"]["task"] == "gym_Acrobot-v1"
    acrobot = {"vector": Box(-np.inf, np.inf, (6,), np.float32)}
    assert run["parameters"] == parameter_counts(load_config("debug"), acrobot, Discrete(3))
    assert all(v > 0 for v in run["median_ms"].values()) and run["flops_per_update"]["total"] > 0


@pytest.mark.slow
def test_bench_compile(tmp_path):
    run = _bench(tmp_path, "--preset", "debug", "--compile")
    assert run["compile"] is True and all(v > 0 for v in run["median_ms"].values())
