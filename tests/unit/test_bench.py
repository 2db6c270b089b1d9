"""`reverie bench` runs end to end at the debug preset and writes every promised field."""

import json

from reverie.cli import main

TIMES = {"world_model", "actor_critic", "train", "policy"}


def test_bench_debug_writes_every_field(tmp_path, capsys):
    path = tmp_path / "results" / "bench.json"
    args = ["bench", "--preset", "debug", "--updates", "2", "--env-steps", "50", "--json", str(path)]
    assert main(args) == 0
    assert "200M frames projected" in capsys.readouterr().out
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
