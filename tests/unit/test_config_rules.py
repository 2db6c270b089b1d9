"""Config values are checked against the rule declared beside each field, and across fields."""

import dataclasses
import subprocess
import sys
import typing

import pytest

from reverie.config import (
    Config,
    ConfigError,
    _field_of,
    all_keys,
    explain,
    load_config,
    load_config_file,
    preset_names,
    preset_stack,
    validate,
)

# Every preset alone and on top of each family preset, plus the combinations the tests use.
COMBINATIONS = sorted({tuple(preset_stack(name)) for name in preset_names()}
                      | {(family, *preset_stack(name)) for family in ("atari", "dmc", "gym") for name in preset_names()
                         if preset_stack(name)[0] in (name, family)}
                      | {("gym", "debug"), ("atari", "debug"), ("dmc", "debug"), ("gym", "cartpole"),
                         ("atari", "atari_official"), ("dmc", "humanoid")})


@pytest.mark.parametrize("presets", COMBINATIONS, ids=",".join)
def test_every_preset_combination_passes_the_rules(presets):
    validate(load_config(list(presets)))


@pytest.mark.parametrize("override, words", [
    ("run.train_every=0", ["'run.train_every' = 0", ">= 1", "the paper uses 4"]),
    ("replay.batch=-5", ["'replay.batch' = -5", ">= 1", "the paper uses 50"]),
    ("world_model.rssm.classes=-1", ["'world_model.rssm.classes' = -1", "or >= 2"]),
    ("world_model.rssm.classes=1", ["'world_model.rssm.classes' = 1", "or >= 2"]),
    ("env.size=[64]", ["'env.size' = [64]", "2 values, each >= 1", "[64, 64]"]),
    ("env.size=[64,0]", ["'env.size' = [64, 0]", "each >= 1"]),
    ("behavior.discount=1.5", ["'behavior.discount' = 1.5", "in (0, 1]", "the paper uses 0.995"]),
    ("behavior.discount=0", ["'behavior.discount' = 0.0", "in (0, 1]"]),
    ("world_model.kl.balance=2", ["'world_model.kl.balance' = 2.0", "in [0, 1]", "0.8"]),
    ("run.steps=-1", ["'run.steps' = -1", ">= 1"]),
    ("world_model.opt.lr=0", ["'world_model.opt.lr' = 0.0", "> 0"]),
    ("behavior.actor_opt.lr=-1e-4", ["'behavior.actor_opt.lr'", "> 0"]),
    ("world_model.opt.lr=.inf", ["'world_model.opt.lr' = inf", "finite"]),
    ("behavior.return_lambda=.nan", ["'behavior.return_lambda' = nan", "finite"]),
    ("env.sticky_actions=1.2", ["'env.sticky_actions' = 1.2", "in [0, 1]", "0.25"]),
    ("behavior.entropy=linear(1e-3,-1e-4,1000)", ["'behavior.entropy'", ">= 0"]),
    ("behavior.reinforce_mix=exp(2,0,10)", ["'behavior.reinforce_mix'", "in [0, 1]"]),
    ("world_model.grad_heads=[image,image]", ["'world_model.grad_heads'", "without repeats"]),
    ("world_model.encoder.kernels=[]", ["'world_model.encoder.kernels'", "one or more"]),
    ("seed=-3", ["'seed' = -3", "in [0, 4294967295]"]),
    ("run.keep_checkpoints=0", ["'run.keep_checkpoints' = 0", ">= 1"]),
    ("world_model.opt.weight_decay=1", ["'world_model.opt.weight_decay' = 1.0", "in [0, 1)"]),
])
def test_a_value_outside_its_rule_names_key_value_rule_and_paper_value(override, words):
    with pytest.raises(ConfigError) as error:
        load_config("atari", [override])
    for word in words:
        assert word in str(error.value), (word, str(error.value))


@pytest.mark.parametrize("overrides, keys", [
    (["replay.capacity=40", "replay.length=50"], ["replay.length = 50", "replay.capacity = 40"]),
    (["run.prefill=10"], ["run.prefill = 10", "replay.length = 50"]),
    (["replay.cross_episodes=true", "replay.prioritize_ends=true"],
     ["replay.cross_episodes = True", "replay.prioritize_ends = True"]),
])
def test_cross_field_rules_name_both_keys(overrides, keys):
    with pytest.raises(ConfigError, match="break the rule") as error:
        load_config("atari", overrides)
    for key in keys:
        assert key in str(error.value)


def test_values_at_the_edges_of_their_rules_are_accepted():
    config = load_config("atari", ["behavior.discount=1", "world_model.kl.balance=0", "world_model.rssm.classes=0",
                                   "run.prefill=50", "replay.capacity=50", "run.eval_every=0",
                                   "behavior.entropy=linear(1e-3,0,1000)", "world_model.opt.lr=warmup(100,3e-4)",
                                   "behavior.return_lambda=0"])
    assert config.world_model.rssm.classes == 0 and config.behavior.discount == 1.0
    # λ = 0 is the one-step TD target (unit/test_actor_critic.py shows it), not a degenerate case.
    assert config.behavior.return_lambda == 0.0


def test_a_preset_value_breaking_a_rule_names_the_preset(monkeypatch):
    import reverie.config as module

    real = module.read_preset
    monkeypatch.setattr(module, "read_preset", lambda name: {"replay": {"batch": 0}} if name == "bad" else real(name))
    with pytest.raises(ConfigError, match=r"preset 'bad': config key 'replay.batch' = 0"):
        load_config("atari,bad")


def test_validate_catches_values_set_in_python_and_a_corrupt_saved_config(tmp_path):
    config = load_config("atari")
    config.run.train_every = 0
    with pytest.raises(ConfigError, match="run.train_every"):
        validate(config)
    path = tmp_path / "config.yaml"
    load_config("atari").save(path)
    path.write_text(path.read_text().replace("batch: 50", "batch: -5"))
    with pytest.raises(ConfigError, match="replay.batch"):
        load_config_file(path)


def test_every_numeric_field_declares_a_rule_and_every_field_a_comment():
    for key in all_keys():
        spec = _field_of(key)
        hint = typing.get_type_hints(_owner(key))[key.split(".")[-1]]
        if hint not in (bool, str) and typing.get_origin(hint) is not typing.Literal:
            assert "rule" in spec.metadata, f"{key} ({hint}) has no rule"
        assert "(no comment)" not in explain(key).splitlines()[0], key


def _owner(key):
    cls = Config
    for part in key.split(".")[:-1]:
        cls = typing.get_type_hints(cls)[part]
    return cls


def test_schema_defaults_pass_their_own_rules():
    validate(Config())  # atari preset rules (prefill >= length) hold for the plain defaults too
    assert dataclasses.asdict(Config()) == dataclasses.asdict(load_config(None))


def test_explain_prints_comment_rule_default_and_presets():
    text = explain("behavior.discount")
    assert "γ (Table D1: 0.995)" in text
    assert "must be in (0, 1]" in text and "default:  0.995" in text and "the paper's value" in text
    assert "preset atari_official:" in text and "0.999" in text
    assert "replay.length <= replay.capacity" in explain("replay.capacity")
    with pytest.raises(ConfigError, match="did you mean 'world_model.kl.balance'"):
        explain("kl.balance")


def test_cli_config_checks_values_and_explains_keys():
    run = [sys.executable, "-m", "reverie", "config"]
    bad = subprocess.run([*run, "--set", "replay.batch=-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "reverie: error: config key 'replay.batch' = -5 is not accepted: it must be >= 1 " \
                                 "(the paper uses 50)"
    good = subprocess.run([*run, "--explain", "world_model.kl.balance"], capture_output=True, text=True)
    assert good.returncode == 0 and "α, KL balancing" in good.stdout and "preset no_kl_balance:" in good.stdout


def test_explain_a_section_explains_each_of_its_keys():
    text = explain("world_model.kl")
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("world_model.kl.")] == [
        "world_model.kl.scale", "world_model.kl.balance", "world_model.kl.free", "world_model.kl.free_avg"]


def test_cli_output_piped_into_a_closed_pipe_is_not_an_error():
    shell = f"{sys.executable} -m reverie config --explain world_model | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("world_model.")
