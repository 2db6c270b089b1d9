"""Config: presets load and compose, overrides parse to the field's type, mistakes are caught."""

import json
import subprocess
import sys

import pytest

from reverie.config import (
    ConfigError,
    _leaf_keys,
    get_value,
    load_config,
    load_config_file,
    model_changes,
    preset_names,
    preset_stack,
    read_preset,
)
from reverie.schedules import parse_schedule

TABLE_D1 = {
    "run.steps": 50_000_000,
    "run.train_every": 4,
    "env.action_repeat": 4,
    "env.size": [64, 64],
    "env.grayscale": True,
    "env.sticky_actions": 0.25,
    "env.full_action_space": True,
    "env.time_limit": 108_000,
    "env.life_loss": False,
    "env.reward_transform": "tanh",
    "replay.capacity": 2_000_000,
    "replay.batch": 50,
    "replay.length": 50,
    "world_model.rssm.deter": 600,
    "world_model.rssm.hidden": 600,
    "world_model.rssm.stoch": 32,
    "world_model.rssm.classes": 32,
    "world_model.rssm.layer_norm": True,
    "world_model.encoder.depth": 48,
    "world_model.encoder.kernels": [4, 4, 4, 4],
    "world_model.decoder.depth": 48,
    "world_model.decoder.kernels": [5, 5, 6, 6],
    "world_model.heads.layers": 4,
    "world_model.heads.units": 400,
    "world_model.kl.scale": 0.1,
    "world_model.kl.balance": 0.8,
    "world_model.kl.free": 0.0,
    "world_model.loss_scales.image": 1.0,
    "world_model.loss_scales.reward": 1.0,
    "world_model.loss_scales.discount": 1.0,
    "world_model.grad_heads": ["image", "reward", "discount"],
    "world_model.opt.lr": 2e-4,
    "world_model.opt.eps": 1e-5,
    "world_model.opt.clip": 100.0,
    "world_model.opt.weight_decay": 1e-6,
    "behavior.horizon": 15,
    "behavior.discount": 0.995,
    "behavior.return_lambda": 0.95,
    "behavior.reinforce_mix": 1.0,
    "behavior.entropy": 1e-3,
    "behavior.slow_critic_every": 100,
    "behavior.slow_critic_fraction": 1.0,
    "behavior.expl_noise": 0.0,  # the paper explores by sampling the actor only
    "behavior.eval_noise": 0.0,
    "behavior.actor.layers": 4,
    "behavior.actor.units": 400,
    "behavior.actor.dist": "onehot",
    "behavior.critic.layers": 4,
    "behavior.critic.units": 400,
    "behavior.actor_opt.lr": 4e-5,
    "behavior.critic_opt.lr": 1e-4,
    "seed": 0,
    "device": "auto",
    "task": "atari_pong",
}


def _lookup(data, key):
    for part in key.split("."):
        data = data[part]
    return data


def test_atari_preset_is_table_d1():
    config = load_config("atari").to_dict()
    for key, expected in TABLE_D1.items():
        assert _lookup(config, key) == expected, key


def test_cli_config_json_shows_table_d1():
    out = subprocess.run(
        [sys.executable, "-m", "reverie", "config", "--preset", "atari", "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out)
    for key, expected in TABLE_D1.items():
        assert _lookup(data, key) == expected, key


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    load_config(preset_stack(name))  # with its base preset where it has one (dmc_small: dmc first)


def test_a_resizing_preset_needs_its_base_first_and_its_suites_task():
    assert load_config("dmc,dmc_small").world_model.encoder.depth == 16
    assert load_config("dmc,dmc_small,debug").world_model.encoder.depth == load_config("debug").world_model.encoder.depth
    with pytest.raises(ConfigError, match="compose it after that one, --preset dmc,dmc_small"):
        load_config("dmc_small")
    with pytest.raises(ConfigError, match="compose it after"):
        load_config("dmc_small,dmc")
    with pytest.raises(ConfigError, match="'dmc_small' is for dmc_ tasks, not task 'gym_CartPole-v1'"):
        load_config("dmc,dmc_small", ["task=gym_CartPole-v1"])


def test_presets_compose_left_to_right():
    config = load_config("atari,no_layer_norm,gaussian")
    assert config.world_model.rssm.layer_norm is False
    assert config.world_model.rssm.classes == 0
    assert load_config("dmc,humanoid").world_model.kl.scale == 2.0
    assert load_config("humanoid,dmc").world_model.kl.scale == 1.0  # later wins
    assert load_config(["atari", "atari_official"]).replay.batch == 16


VARIANTS = [name for name in preset_names()  # ablations, schedules: not debug, not a resizing preset
            if "task" not in read_preset(name) and name != "debug" and preset_stack(name) == [name]]


@pytest.mark.parametrize("name", VARIANTS)
def test_debug_sizes_compose_with_every_ablation_in_either_order(name, recwarn):
    # `gaussian,debug` once gave categorical latents: debug set `classes`, the key that makes
    # latents Gaussian. Debug sets sizes and the schedule, never a key of an ablation or variant.
    before, after = load_config(f"{name},debug"), load_config(f"debug,{name}")
    assert before == after
    for preset in (name, "debug"):
        for key in _leaf_keys(read_preset(preset)):
            assert get_value(before, key) == get_value(load_config(preset), key), (preset, key)
    assert not recwarn.list, [str(w.message) for w in recwarn.list]


def test_gaussian_debug_is_a_gaussian_model_at_debug_sizes():
    rssm = load_config("gaussian,debug").world_model.rssm
    assert rssm.classes == 0 and (rssm.stoch, rssm.deter) == (4, 32)


def test_a_preset_that_undoes_an_earlier_ablation_or_debug_warns_naming_both_and_the_key():
    with pytest.warns(UserWarning) as caught:
        config = load_config("schedules,no_reinforce")
    assert config.behavior.reinforce_mix == 0.0  # still left to right; the warning says so
    assert [str(w.message) for w in caught] == [
        "preset 'no_reinforce' changes behavior.reinforce_mix = 'linear(0.9,1.0,2500000)' set by preset "
        "'schedules' (presets apply left to right: name 'schedules' after 'no_reinforce' to keep them)"]
    with pytest.warns(UserWarning, match=r"preset 'atari' changes run\.steps = 2000, .* set by preset 'debug'"):
        load_config("debug,atari")


@pytest.mark.parametrize("presets", ["atari,debug", "dmc,humanoid,debug", "gym,cartpole", "atari,atari_official",
                                     "minatar,debug", "atari,no_layer_norm,gaussian"])
def test_a_preset_that_refines_a_task_preset_does_not_warn(presets, recwarn):
    load_config(presets)
    assert not recwarn.list, [str(w.message) for w in recwarn.list]


def test_overrides_are_parsed_to_field_types():
    config = load_config("atari", [
        "replay.batch=16", "run.steps=5e4", "world_model.kl.free=1", "env.size=[32,32]",
        "world_model.rssm.layer_norm=false", "behavior.entropy=linear(3e-3,3e-4,100)",
        "world_model.grad_heads=[image]", "device=cpu",
    ])
    assert config.replay.batch == 16
    assert config.run.steps == 50_000 and isinstance(config.run.steps, int)
    assert config.world_model.kl.free == 1.0 and isinstance(config.world_model.kl.free, float)
    assert config.env.size == [32, 32]
    assert config.world_model.rssm.layer_norm is False
    assert config.behavior.entropy == "linear(3e-3,3e-4,100)"
    assert config.world_model.grad_heads == ["image"]


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'replay\.bach'.*'replay\.batch'"):
        load_config("atari", ["replay.bach=16"])
    with pytest.raises(ConfigError, match=r"world_model\.kl\.balance"):
        load_config("atari", ["world_model.kl.balanse=0.5"])


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'replay\.batch' expects an integer.*'many'"):
        load_config("atari", ["replay.batch=many"])
    with pytest.raises(ConfigError, match=r"'replay\.batch' expects an integer.*2\.5"):
        load_config("atari", ["replay.batch=2.5"])
    with pytest.raises(ConfigError, match=r"'env\.grayscale' expects true or false"):
        load_config("atari", ["env.grayscale=1"])
    with pytest.raises(ConfigError, match=r"'device' must be one of auto, cpu, cuda.*'cuda'"):
        load_config("atari", ["device=cuda:0"])
    with pytest.raises(ConfigError, match=r"grad_heads.*must be one of image, reward, discount"):
        load_config("atari", ["world_model.grad_heads=[image,rewards]"])


def test_malformed_schedule_is_caught():
    with pytest.raises(ConfigError, match=r"behavior\.entropy.*linear takes 3 numbers"):
        load_config("atari", ["behavior.entropy=linear(1e-3,1e-4)"])
    with pytest.raises(ConfigError, match=r"behavior\.reinforce_mix.*malformed schedule"):
        load_config("atari", ["behavior.reinforce_mix=cosine(1,0,10)"])
    with pytest.raises(ConfigError, match=r"positive"):
        load_config("atari", ["world_model.opt.lr=warmup(0,2e-4)"])


def test_bad_override_syntax_and_unknown_preset():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("atari", ["replay.batch"])
    with pytest.raises(ConfigError, match=r"unknown preset 'atary'.*'atari'"):
        load_config("atary")
    with pytest.raises(ConfigError, match="is a section"):
        load_config("atari", ["replay=3"])


@pytest.mark.parametrize(
    "spec, step, expected",
    [
        (3e-4, 123, 3e-4),
        ("2e-4", 0, 2e-4),
        ("linear(3e-4,1e-4,100)", 0, 3e-4),
        ("linear(3e-4,1e-4,100)", 50, 2e-4),  # 3e-4 + (1e-4 − 3e-4)·0.5
        ("linear(3e-4,1e-4,100)", 1000, 1e-4),  # stays at the final value
        ("warmup(1e4,2e-4)", 2500, 5e-5),  # 2e-4 · 2500/1e4
        ("warmup(1e4,2e-4)", 20000, 2e-4),
        ("exp(1.0,0.0,10)", 20, 0.25),  # 1 · 0.5^(20/10)
    ],
)
def test_schedules_evaluate_to_hand_computed_values(spec, step, expected):
    assert parse_schedule(spec)(step) == pytest.approx(expected)


def test_saved_config_round_trips_and_model_changes_are_detected(tmp_path):
    config = load_config("debug", ["seed=3"])
    config.save(tmp_path / "config.yaml")
    loaded = load_config_file(tmp_path / "config.yaml")
    assert loaded == config
    changed = load_config("debug", ["seed=3", "world_model.rssm.deter=64", "run.steps=10"])
    assert model_changes(config, changed) == ["world_model.rssm.deter"]
    (tmp_path / "bad.yaml").write_text("replay:\n  batchh: 3\n")
    with pytest.raises(ConfigError, match=r"replay\.batchh.*replay\.batch"):
        load_config_file(tmp_path / "bad.yaml")
