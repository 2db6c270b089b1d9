"""Parameter counts per module (``reverie config --params``)."""

import pytest

from reverie.cli import main
from reverie.config import load_config
from reverie.tools.params import ORDER, format_counts, parameter_counts

PARTS = ("encoder", "rssm", "decoder", "reward", "discount", "actor", "critic")


def test_atari_counts_match_the_paper_scale():
    counts = parameter_counts(load_config("atari"))
    assert counts["total"] == sum(counts[k] for k in PARTS)  # nothing outside the named parts
    world_model = sum(counts[k] for k in PARTS[:5])
    assert 18e6 < world_model < 22e6  # paper: ~20M
    assert 0.9e6 < counts["actor"] < 1.3e6 and 0.9e6 < counts["critic"] < 1.3e6  # paper: ~1M each


def test_continuous_preset_without_discount_head():
    counts = parameter_counts(load_config("dmc,debug"))
    assert counts["discount"] == 0 and counts["actor"] > 0


def test_format_lists_every_module_in_order():
    lines = format_counts({"actor": 1_500_000, "encoder": 2, "total": 1_500_002}).splitlines()
    assert [line.split()[0] for line in lines] == ["encoder", "actor", "total"]
    assert "1.50M" in lines[1] and "(1,500,000)" in lines[1]


def _agent_counts(config):
    """Trainable parameters of a real Agent on the spaces of the real environment of the task."""
    from reverie.agent import Agent
    from reverie.envs import make_env

    env = make_env(config)
    agent = Agent(config, env.obs_space, env.act_space)
    env.close()
    count = lambda module: sum(p.numel() for p in module.parameters() if p.requires_grad)  # noqa: E731
    return env, count(agent.world_model) + count(agent.behavior.actor) + count(agent.behavior.critic)


@pytest.mark.parametrize("presets, obs_key, act", [
    ("gym,cartpole", "vector", "Discrete(2)"),  # before: a 64×64×3 image and Discrete(18)
    ("dmc,humanoid,debug", "image", "Box(-1.0, 1.0, (21,), float32)"),  # before: Box(6)
    ("atari,debug", "image", "Discrete(18)"),
])
def test_counts_are_of_the_tasks_own_spaces(presets, obs_key, act):
    config = load_config(presets, ["device=cpu"])
    env, total = _agent_counts(config)
    assert list(env.obs_space) == [obs_key] and str(env.act_space) == act
    assert parameter_counts(config)["total"] == total


def test_config_params_cli_counts_the_tasks_network(capsys):
    config = load_config("gym,cartpole", ["device=cpu"])
    assert main(["config", "--preset", "gym,cartpole", "--params"]) == 0
    printed = _printed_counts(capsys.readouterr().out)
    assert set(printed) == set(ORDER) and printed == parameter_counts(config)
    assert printed["total"] == _agent_counts(config)[1]
    assert main(["config", "--preset", "gym,cartpole", "--set", "task=gym_Acrobot-v1", "--params"]) == 0
    acrobot = _printed_counts(capsys.readouterr().out)
    # The encoder's first layer sees 6 observations instead of 4; the actor outputs 3 actions instead of 2.
    units = config.world_model.encoder.mlp_units
    assert acrobot["encoder"] - printed["encoder"] == 2 * units
    assert acrobot["actor"] - printed["actor"] == config.behavior.actor.units + 1


def _printed_counts(text):
    """``{module: count}`` from lines like ``encoder  0.02M  (21,632)``."""
    return {line.split()[0]: int(line.split("(")[1].rstrip(")").replace(",", "")) for line in text.splitlines()}


def test_grid_nets_are_counted_on_the_real_minatar_grid():
    pytest.importorskip("minatar")
    config = load_config("minatar", ["world_model.encoder.kind=grid", "world_model.decoder.kind=grid", "device=cpu"])
    counts = parameter_counts(config)
    assert counts["total"] == _agent_counts(config)[1]
    # Breakout's grid (10, 10, 4) from the env; 3×3 convs of 16 channels, biases included.
    depth, channels, cells = 16, 4, 10 * 10
    feat = config.world_model.rssm.deter + config.world_model.rssm.stoch * config.world_model.rssm.classes
    conv = lambda c_in, c_out: (9 * c_in + 1) * c_out  # noqa: E731
    assert counts["encoder"] == conv(channels, depth) + 2 * conv(depth, depth)  # no term in the grid's size
    assert counts["decoder"] == (feat + 1) * cells * depth + 2 * conv(depth, depth) + conv(depth, channels)
