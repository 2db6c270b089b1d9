"""`reverie bench` runs end to end at the debug preset and writes every promised field."""

import json

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete

from reverie import runtime
from reverie.agent import Agent
from reverie.cli import main
from reverie.config import load_config
from reverie.tools.params import parameter_counts
from reverie.tools.timing import acting_ms_per_agent_step, count_flops, synthetic_batch, time_policy

TIMES = {"world_model", "actor_critic", "train", "policy", "policy_after_update"}


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
    ms = run["median_ms"]
    assert run["envs"] == 1 and run["acting_threads"] == [1] and run["repeats"]["policy_after_update"] >= 3
    projection = run["projection"]
    assert projection["updates"] == 12_500_000 and projection["frames"] == 200_000_000
    # The paper's ratio, one env: of every 4 policy calls the first follows an update.
    acting = (ms["policy_after_update"] + 3 * ms["policy"]) / 4
    cycle = ms["train"] + 4 * (acting + run["env"]["env_step_ms"])
    assert abs(projection["ms_per_update_cycle"] - cycle) < 0.01  # medians are rounded to µs
    assert abs(projection["days"] - 12_500_000 * projection["ms_per_update_cycle"] / 1e3 / 86400) < 1e-9
    # The preset's own cost per agent step: debug trains once every 5 agent steps.
    step = run["agent_step"]
    assert (step["train_every"], step["train_steps"]) == (5, 1)
    acting = (ms["policy_after_update"] + 4 * ms["policy"]) / 5
    per_step = ms["train"] / 5 + acting + run["env"]["env_step_ms"]
    assert abs(step["acting_ms"] - acting) < 0.01
    assert abs(step["ms"] - per_step) < 0.01 and abs(step["sec_per_1k_steps"] - per_step) < 0.01


def _bench(tmp_path, *args):
    path = tmp_path / "bench.json"
    assert main(["bench", *args, "--updates", "1", "--env-steps", "20", "--json", str(path)]) == 0
    return json.loads(path.read_text())["runs"][-1]


def test_bench_times_the_network_of_the_presets_task(tmp_path):
    # gym,cartpole: vector[4] and Discrete(2); before, a 64×64×3 image and 18 actions were timed.
    run = _bench(tmp_path, "--preset", "gym,cartpole", "--set", "compile=false")  # compiling takes minutes
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


def test_flops_of_a_whole_graph_compiled_function_are_its_eager_flops():
    # The agent's compiled observe loop is fullgraph=True, which raises under the counter's
    # dispatch mode (`reverie bench --compile` and the cartpole preset crashed); the eager
    # backend keeps this fast, the refusal is dynamo's and the same.
    a = torch.randn(8, 8, requires_grad=True)
    eager = lambda: (a @ a).sum().backward()  # noqa: E731
    compiled = torch.compile(lambda x: (x @ x).sum(), backend="eager", fullgraph=True)
    assert count_flops(lambda: compiled(a).backward())[0] == count_flops(eager)[0] == 3 * 2 * 8**3


def test_bench_envs_times_one_policy_call_of_n_observations_on_the_drivers_threads(tmp_path, monkeypatch):
    # --envs 3 through the CLI: every policy call bench makes (the timed ones included) gets a
    # batch of 3 and runs on the threads the Driver's block gives, here with 2 threads outside it.
    calls = []
    policy = Agent.policy

    def spy(agent, obs, state=None, mode="train"):
        calls.append((obs["is_first"].shape[0], torch.get_num_threads()))
        return policy(agent, obs, state, mode)

    monkeypatch.setattr(Agent, "policy", spy)
    before = torch.get_num_threads()
    try:
        run = _bench(tmp_path, "--preset", "debug", "--set", "threads=2", "--envs", "3")
        torch.set_num_threads(2)  # the run's threads, as bench set them
        with runtime.acting_threads(torch.device("cpu")):
            driver_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert driver_threads == 1
    assert len(calls) > 100 and set(calls) == {(3, driver_threads)}
    assert run["envs"] == 3 and run["acting_threads"] == [driver_threads] and run["machine"]["torch_threads"] == 2
    ms, step = run["median_ms"], run["agent_step"]
    assert step["envs"] == run["projection"]["envs"] == 3
    assert abs(step["policy_ms_per_env_step"] - ms["policy"] / 3) < 1e-3  # medians are rounded to µs
    # debug: an update every 5 agent steps = every 5/3 rounds of 3 envs.
    assert abs(step["acting_ms"] - (ms["policy_after_update"] + 2 / 3 * ms["policy"]) / (5 / 3) / 3) < 1e-3


def test_acting_per_agent_step_counts_the_first_call_after_each_update():
    # policy 2 ms, the first call after an update 6 ms.
    assert acting_ms_per_agent_step(2.0, 6.0, envs=1, train_every=4) == (6 + 3 * 2) / 4
    assert acting_ms_per_agent_step(2.0, 6.0, envs=4, train_every=4) == 6 / 4  # an update every round
    assert acting_ms_per_agent_step(2.0, 6.0, envs=8, train_every=4) == 6 / 8  # two per round, one refresh
    assert acting_ms_per_agent_step(2.0, 6.0, envs=2, train_every=5) == (6 + 1.5 * 2) / 2.5 / 2


def test_bench_after_update_calls_recast_the_bf16_acting_copy(monkeypatch):
    # Under bf16 the policy acts with cached bf16 weights; the loop's first call after an update
    # re-casts them, and bench's after-update calls must too (the plain calls must not).
    config = load_config("debug", ["device=cpu", "precision=bf16"])
    image = {"image": Box(0, 255, (64, 64, 1), np.uint8)}
    agent = Agent(config, image, Discrete(18))
    batch = synthetic_batch(config, image, Discrete(18), seed=0)
    copy, modules, refreshed = agent._acting, agent._acting.modules, []

    def watched():
        key = list(copy.key)
        result = modules()
        refreshed.append(copy.key != key)
        return result

    monkeypatch.setattr(copy, "modules", watched)
    result = time_policy(agent, batch, calls=5, envs=4)  # on the CPU the bf16 copy acts from 4 envs on
    assert len(result["policy"]) == 5 and len(result["policy_after_update"]) == 3
    # the first call builds the copy; 5 warm-up and 5 timed calls reuse it; 3 after updates re-cast it
    assert refreshed == [True] + [False] * 10 + [True] * 3
