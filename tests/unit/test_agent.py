"""The Agent contract: policy modes, one training step, metrics, optimizers, checkpoints."""

import io
import math
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie.agent import Agent
from reverie.config import ConfigError, load_config

IMAGE = {"image": gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
METRICS = {"actor_loss", "critic_loss", "actor_ent", "actor_reinforce", "actor_dynamics", "critic_mean",
           "return_mean", "model_grad_norm", "actor_grad_norm", "critic_grad_norm", "model_loss",
           "image_loss", "reward_loss", "discount_loss", "kl_loss", "model_kl", "prior_ent", "post_ent",
           "model_skipped", "actor_skipped", "critic_skipped"}
SKIPS = ("model_skipped", "actor_skipped", "critic_skipped")


def parameters(agent):
    """Copies of the parameters each optimizer steps: world model, actor, critic."""
    parts = {"model": agent.world_model, "actor": agent.behavior.actor, "critic": agent.behavior.critic}
    return {name: [p.detach().clone() for p in module.parameters()] for name, module in parts.items()}


def assert_every_part_updated(agent, before, metrics):
    """No optimizer skipped its step (a NaN or inf gradient would), and each one moved its
    parameters: finite metrics alone pass when every update is skipped."""
    assert {k: metrics[k] for k in SKIPS} == dict.fromkeys(SKIPS, 0.0), metrics
    for name, now in parameters(agent).items():
        assert metrics[f"{name}_grad_norm"] > 0, name
        assert any(not torch.equal(a, b) for a, b in zip(before[name], now)), f"{name} did not change"


def make_agent(presets="debug", obs_space=None, act_space=None, overrides=(), seed=0):
    config = load_config(presets, ["device=cpu", *overrides])
    torch.manual_seed(seed)
    return Agent(config, obs_space or IMAGE, act_space or gym.spaces.Discrete(4))


def random_obs(obs_space, n, rng, is_first=True):
    obs = {}
    for key, space in obs_space.items():
        if space.dtype == np.uint8:
            obs[key] = rng.integers(0, 256, (n, *space.shape), dtype=np.uint8)
        else:
            obs[key] = rng.normal(size=(n, *space.shape)).astype(np.float32)
    flags = {"is_first": np.full(n, is_first), "is_last": np.zeros(n, bool), "is_terminal": np.zeros(n, bool)}
    return {**obs, "reward": np.zeros(n, np.float32), **flags}


def random_batch(agent, obs_space=None, seed=0):
    """A replay-like batch ``[B, L, ...]`` at the agent's replay.batch and replay.length."""
    b, length = agent.config.replay.batch, agent.config.replay.length
    rng = np.random.default_rng(seed)
    flat = random_obs(obs_space or IMAGE, b * length, rng, is_first=False)
    batch = {k: v.reshape(b, length, *v.shape[1:]) for k, v in flat.items()}
    actor = agent.behavior.actor
    if actor.discrete:
        batch["action"] = np.eye(actor.act_size, dtype=np.float32)[rng.integers(0, actor.act_size, (b, length))]
    else:
        batch["action"] = rng.uniform(-1, 1, (b, length, actor.act_size)).astype(np.float32)
    batch["reward"] = rng.normal(size=(b, length)).astype(np.float32)
    batch["is_first"][:, 0] = True
    batch["is_terminal"] = rng.random((b, length)) < 0.05
    return batch


@pytest.mark.parametrize("mode", ["train", "eval", "eval_sample", "random"])
def test_policy_modes_return_one_hot_actions_and_a_state(mode):
    agent = make_agent()
    rng = np.random.default_rng(0)
    action, state = agent.policy(random_obs(IMAGE, 3, rng), None, mode)
    assert action.shape == (3, 4) and action.dtype == np.float32
    assert np.all(action.sum(-1) == 1) and np.all((action == 0) | (action == 1))
    action, state = agent.policy(random_obs(IMAGE, 3, rng, is_first=False), state, mode)
    latent, prev_action = state
    assert latent["deter"].shape == (3, agent.config.world_model.rssm.deter)
    assert np.array_equal(prev_action.numpy(), action)


def test_eval_policy_is_deterministic_and_is_first_resets_the_state():
    agent = make_agent()
    obs = random_obs(IMAGE, 2, np.random.default_rng(0))
    # The posterior latent is sampled in every mode (official code): same seed, same draw.
    torch.manual_seed(1)
    first, state = agent.policy(obs, None, "eval")
    for _ in range(3):  # carry some state, then a new episode starts
        _, state = agent.policy({**obs, "is_first": np.zeros(2, bool)}, state, "random")
    torch.manual_seed(1)
    again, _ = agent.policy(obs, state, "eval")
    assert np.array_equal(first, again)


@pytest.mark.parametrize("discrete", [True, False])
def test_eval_acts_on_the_actors_mode_and_eval_sample_on_its_samples(discrete, monkeypatch):
    """Under one posterior draw per row, ``eval`` returns the actor's mode in every row and
    ``eval_sample`` its samples: for an actor spread over its actions the samples differ from
    the mode in most rows (the paper's and the official evaluation is the mode)."""
    act_space = gym.spaces.Discrete(4) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)
    agent = make_agent("debug" if discrete else "dmc,debug", VECTOR, act_space)
    obs = random_obs(VECTOR, 500, np.random.default_rng(0))
    seen = []
    actor = agent.behavior.actor
    forward = type(actor).forward
    monkeypatch.setattr(type(actor), "forward", lambda self, feat: seen.append(forward(self, feat)) or seen[-1])
    for mode in ("eval", "eval_sample"):
        torch.manual_seed(3)  # the same posterior draws in both modes
        action, _ = agent.policy(obs, None, mode)
        mode_action = seen[-1].mode().float().numpy()
        same = np.all(np.isclose(action, mode_action, atol=1e-6), axis=-1)
        assert same.all() if mode == "eval" else same.mean() < 0.5, (mode, same.mean())


def test_unknown_policy_mode_fails_clearly():
    with pytest.raises(ValueError, match="policy mode"):
        make_agent().policy(random_obs(IMAGE, 1, np.random.default_rng(0)), None, "greedy")


def test_continuous_actions_lie_in_the_box():
    obs_space = {"vector": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    agent = make_agent("dmc,debug", obs_space, gym.spaces.Box(-1, 1, (2,), np.float32))
    state = None
    for mode in ("train", "eval", "random"):
        action, state = agent.policy(random_obs(obs_space, 4, np.random.default_rng(0)), state, mode)
        assert action.shape == (4, 2) and np.all(np.abs(action) <= 1)


VECTOR = {"vector": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)}


def test_eval_noise_replaces_the_action_with_a_uniform_one_at_rate_epsilon():
    """official ``action_noise``: probs = ε/A + (1 − ε)·onehot, so the mode survives with
    probability 1 − ε + ε/A = 0.625 at ε = 0.5, A = 4, and each other action has ε/A."""
    n = 4000
    obs = random_obs(VECTOR, n, np.random.default_rng(0))
    actions = {}
    for eps in (0.0, 0.5):
        agent = make_agent(obs_space=VECTOR, overrides=[f"behavior.eval_noise={eps}"])
        torch.manual_seed(1)  # the same posterior draws, so the same modes, on both sides
        actions[eps], _ = agent.policy(obs, None, "eval")
    clean, noisy = actions[0.0].argmax(-1), actions[0.5].argmax(-1)
    assert abs(np.mean(clean == noisy) - 0.625) < 0.04
    for mode in np.unique(clean):
        rows = noisy[clean == mode]
        if len(rows) < 400:
            continue
        for other in set(range(4)) - {mode}:  # each other action: ε/A = 0.125
            assert abs(np.mean(rows == other) - 0.125) < 0.05, (mode, other)
    assert np.all(actions[0.5].sum(-1) == 1)


def test_action_noise_is_off_by_default_and_follows_its_schedule():
    agent = make_agent(overrides=["behavior.expl_noise=linear(1.0,0.0,10)"])
    action = torch.nn.functional.one_hot(torch.zeros(2000, dtype=torch.long), 4).float()
    assert make_agent()._action_noise(action, "train") is action  # ε = 0: no draw at all
    assert (agent._action_noise(action, "train").argmax(-1) != 0).float().mean() > 0.6  # ε = 1: uniform
    assert agent._action_noise(action, "eval") is action  # eval_noise stays 0
    agent.updates = 10  # the update count is not the schedules' clock
    assert (agent._action_noise(action, "train").argmax(-1) != 0).float().mean() > 0.6
    agent.step = 10  # the agent step is: the schedule's end, ε = 0
    assert agent._action_noise(action, "train") is action


def test_continuous_action_noise_stays_in_the_box():
    agent = make_agent("dmc,debug", VECTOR, gym.spaces.Box(-1, 1, (2,), np.float32), ["behavior.expl_noise=0.5"])
    action = torch.full((1000, 2), 0.9)
    noisy = agent._action_noise(action, "train")
    assert torch.all(noisy.abs() <= 1) and abs(float((noisy - 0.9).std()) - 0.4) < 0.15
    assert 0.4 < float((noisy == 1.0).float().mean()) < 0.6  # ~40 % clipped at the bound


@pytest.mark.parametrize("key", ["behavior.expl_noise=1.5", "behavior.eval_noise=-0.1",
                                 "behavior.expl_noise=linear(2,0,10)"])
def test_action_noise_outside_zero_one_is_refused(key):
    with pytest.raises(ConfigError, match=key.split("=")[0]):
        make_agent(overrides=[key])


@pytest.mark.parametrize("presets", ["debug", "dmc,debug", "no_reinforce,debug"])
def test_train_returns_every_metric_as_a_finite_float(presets):
    obs_space = {"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)} if "dmc" in presets else IMAGE
    act_space = gym.spaces.Box(-1, 1, (2,), np.float32) if "dmc" in presets else None
    agent = make_agent(presets, obs_space, act_space)
    for step in range(2):
        before = parameters(agent)
        start = time.perf_counter()
        metrics = agent.train(random_batch(agent, obs_space, seed=step))
        print(f"{presets} Agent.train {time.perf_counter() - start:.3f}s")
        assert_every_part_updated(agent, before, metrics)
    expected = METRICS if agent.config.world_model.heads.discount else METRICS - {"discount_loss"}
    assert expected <= set(metrics)
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values()), metrics
    assert agent.updates == 2


def test_bf16_training_stays_finite():
    agent = make_agent(overrides=["precision=bf16"])
    for step in range(2):
        before = parameters(agent)
        metrics = agent.train(random_batch(agent, seed=step))
        assert all(math.isfinite(v) for v in metrics.values())
        assert_every_part_updated(agent, before, metrics)


@pytest.mark.slow
def test_train_at_the_atari_preset():
    agent = make_agent("atari", act_space=gym.spaces.Discrete(18))
    start = time.perf_counter()
    metrics = agent.train(random_batch(agent))
    print(f"atari Agent.train {time.perf_counter() - start:.1f}s")
    assert METRICS <= set(metrics) and all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", ["model", "actor", "critic"])
def test_weight_decay_step_shrinks_only_that_optimizers_parameters(name):
    agent = make_agent()
    b = agent.behavior
    opts = {"model": (agent.model_opt, agent.world_model), "actor": (agent.actor_opt, b.actor),
            "critic": (agent.critic_opt, b.critic)}
    before = {k: [p.detach().clone() for p in module.parameters()] for k, (_, module) in opts.items()}
    opt, module = opts[name]
    opt.step(0.0 * sum(p.sum() for p in module.parameters()), step=0)  # zero gradient everywhere
    for key, (_, other) in opts.items():
        for p, old in zip(other.parameters(), before[key]):
            assert torch.equal(p.detach(), old * (1 - 1e-6) if key == name else old)


def test_report_renders_an_open_loop_video():
    agent = make_agent()
    video = agent.report(random_batch(agent))["openl"]
    assert video.dtype == np.uint8 and video.ndim == 4 and video.shape[-1] == 1


def test_report_of_a_vector_only_agent_is_empty():
    vector = {"vector": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)}
    agent = make_agent(obs_space=vector)
    assert agent.report(random_batch(agent, vector)) == {}


def test_state_dict_round_trip_with_weights_only_load():
    agent = make_agent(overrides=["behavior.slow_critic_every=2"])
    agent.train(random_batch(agent))
    agent.train(random_batch(agent, seed=1))  # slow critic now differs from the critic
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = make_agent(overrides=["behavior.slow_critic_every=2"], seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.updates == 2
    a, b = agent.state_dict(), restored.state_dict()
    for key in ("world_model", "actor", "critic", "slow_critic"):
        assert all(torch.equal(v, b[key][k]) for k, v in a[key].items()), key
    assert not all(torch.equal(v, a["critic"][k]) for k, v in a["slow_critic"].items())
    for key in ("model_opt", "actor_opt", "critic_opt"):
        assert a[key]["state"].keys() == b[key]["state"].keys()
        assert all(torch.equal(a[key]["state"][i]["exp_avg"], b[key]["state"][i]["exp_avg"]) for i in a[key]["state"])
    # The same next update from the same batch and seed.
    batch = random_batch(agent, seed=2)
    torch.manual_seed(3)
    m1 = agent.train(batch)
    torch.manual_seed(3)
    m2 = restored.train(batch)
    assert m1 == m2



def test_threads_is_set_by_the_runtime_not_by_the_agent_and_negatives_are_rejected():
    from reverie import runtime

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        agent = make_agent(overrides=["threads=1"])
        assert torch.get_num_threads() == 2  # building an Agent changes nothing global
        agent.policy(random_obs(IMAGE, 1, np.random.default_rng(0)))
        assert torch.get_num_threads() == 2  # nor does acting
        runtime.configure(agent.config)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        with runtime.acting_threads(agent.device):
            assert torch.get_num_threads() == 1  # the loop acts on one CPU thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="'threads' = -1 is not accepted: it must be >= 0"):
        make_agent(overrides=["threads=-1"])
