"""WorldModel: construction from every preset, shapes, losses, one Adam step, parameter count."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie.agent import build_world_model
from reverie.config import load_config, preset_names, preset_stack
from reverie.errors import TaskError
from reverie.spaces import GridBox
from reverie.world_model import WorldModel

B, L = 3, 8


def image_space(channels=1, size=64):
    return gym.spaces.Box(0, 255, (size, size, channels), np.uint8)


def vector_space(dim=5):
    return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)


def spaces_for(config):
    """The observation and action spaces an environment of ``config.task`` would have (MinAtar:
    Breakout's 4-channel grid and its 3 minimal actions; ``unit/test_envs_minatar.py`` checks the game gives them)."""
    if config.task.startswith("minatar"):
        return {"vector": GridBox((10, 10, 4))}, gym.spaces.Discrete(3)
    obs = {"image": image_space(1 if config.env.grayscale else 3, config.env.size[0])}
    act = gym.spaces.Box(-1, 1, (6,), np.float32) if config.task.startswith("dmc") else gym.spaces.Discrete(18)
    return obs, act


def random_batch(obs_space, act_space, seed=0):
    rng = np.random.default_rng(seed)
    batch = {}
    if "image" in obs_space:
        batch["image"] = rng.integers(0, 256, (B, L, *obs_space["image"].shape), dtype=np.uint8)
    if "vector" in obs_space:
        batch["vector"] = rng.normal(size=(B, L, *obs_space["vector"].shape)).astype(np.float32)
    if isinstance(act_space, gym.spaces.Discrete):
        batch["action"] = np.eye(act_space.n, dtype=np.float32)[rng.integers(0, act_space.n, (B, L))]
    else:
        batch["action"] = rng.uniform(-1, 1, (B, L, *act_space.shape)).astype(np.float32)
    batch["is_first"] = np.zeros((B, L), bool)
    batch["is_first"][:, 0] = True
    batch["action"][batch["is_first"]] = 0
    batch["reward"] = rng.normal(size=(B, L)).astype(np.float32)
    batch["is_terminal"] = rng.random((B, L)) < 0.1
    batch["is_last"] = batch["is_terminal"].copy()
    return batch


def debug_model(presets="debug", obs_space=None, act_space=None, overrides=()):
    config = load_config(presets, ["device=cpu", *overrides])
    torch.manual_seed(0)
    return build_world_model(config, obs_space or {"image": image_space()}, act_space or gym.spaces.Discrete(3))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


METRICS = {"model_loss", "image_loss", "reward_loss", "discount_loss", "kl_loss", "model_kl", "prior_ent", "post_ent"}


def test_the_world_model_takes_its_section_and_plain_values_the_agent_reads_from_the_rest():
    config = load_config("debug", ["device=cpu", "behavior.discount=0.9", "env.reward_transform=identity"])
    batch = {"reward": np.array([[-2.0, 0.0, 3.0]], np.float32), "is_terminal": np.array([[False, True, False]])}
    model = WorldModel(config.world_model, {"vector": vector_space(3)}, gym.spaces.Discrete(2), discount=0.5,
                       reward_transform=torch.sign)
    data = model.preprocess(batch)
    assert data["reward"].tolist() == [[-1.0, 0.0, 1.0]] and data["discount"].tolist() == [[0.5, 0.0, 0.5]]
    data = build_world_model(config, {"vector": vector_space(3)}, gym.spaces.Discrete(2)).preprocess(batch)
    assert data["reward"].tolist() == [[-2.0, 0.0, 3.0]]
    assert data["discount"][0].tolist() == pytest.approx([0.9, 0.0, 0.9])


def test_atari_parameter_count():
    config = load_config("atari", ["device=cpu"])
    model = build_world_model(config, {"image": image_space()}, gym.spaces.Discrete(18))
    # Official-code architecture (biases everywhere, LayerNorm gain/bias in the GRU):
    # encoder 1,549,776; RSSM 5,664,848; decoder 10,497,553; reward and discount 1,131,601 each.
    counts = {"encoder": n_params(model.encoder), "rssm": n_params(model.rssm),
              **{name: n_params(head) for name, head in model.heads.items()}}
    assert counts == {"encoder": 1_549_776, "rssm": 5_664_848, "decoder": 10_497_553,
                      "reward": 1_131_601, "discount": 1_131_601}
    assert n_params(model) == pytest.approx(19.98e6, rel=0.01)


@pytest.mark.parametrize("preset", preset_names())
def test_construct_every_preset_at_full_size(preset):
    config = load_config(preset_stack(preset), ["device=cpu"])
    obs_space, act_space = spaces_for(config)
    model = build_world_model(config, obs_space, act_space)
    assert ("discount" in model.heads) == config.world_model.heads.discount


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_trains_one_adam_step_at_debug_size(preset):
    config = load_config([*preset_stack(preset), "debug"], ["device=cpu"])  # debug last: its sizes win
    obs_space, act_space = spaces_for(config)
    torch.manual_seed(0)
    model = build_world_model(config, obs_space, act_space)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    observed = model.observe(random_batch(obs_space, act_space))
    loss, metrics = model.loss(observed)
    post = observed.post
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    expected = METRICS if config.world_model.heads.discount else METRICS - {"discount_loss"}
    assert set(metrics) == expected
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in metrics.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert post["deter"].shape == (B, L, config.world_model.rssm.deter)


@pytest.mark.parametrize("obs", ["image", "vector", "mixed"])
@pytest.mark.parametrize("presets", ["debug", "debug,gaussian"])
def test_observation_kinds_shapes(obs, presets):
    obs_space = {"image": {"image": image_space(3)}, "vector": {"vector": vector_space()},
                 "mixed": {"image": image_space(3), "vector": vector_space()}}[obs]
    model = debug_model(presets, obs_space)
    batch = random_batch(obs_space, gym.spaces.Discrete(3))
    embed = model.encoder(model.preprocess(batch))
    assert embed.shape == (B, L, model.encoder.out_dim)
    observed = model.observe(batch)
    loss, metrics = model.loss(observed)
    post = observed.post
    dists = model.heads["decoder"](model.rssm.get_feat(post))
    assert set(dists) == set(obs_space)
    if "image" in dists:
        assert dists["image"].mean.shape == (B, L, 3, 64, 64)
    if "vector" in dists:
        assert dists["vector"].mean.shape == (B, L, 5)
    # The "image" term is −log N(target; mean, 1) summed over every decoded key, then averaged
    # over [B, L]: ½‖target − mean‖² + ½·D·log 2π, with D the decoded size. The decoder is
    # deterministic given post, so its means here are those the loss used.
    data = model.preprocess(batch)
    nll = 0.0
    for key, dist in dists.items():
        target = data[key].permute(0, 1, 4, 2, 3).float() / 255 - 0.5 if key == "image" else data[key]
        error = (target - dist.mean).flatten(2)
        nll = nll + 0.5 * error.square().sum(-1) + 0.5 * error.shape[-1] * np.log(2 * np.pi)
    torch.testing.assert_close(metrics["image_loss"], nll.mean().detach(), rtol=1e-5, atol=1e-4)
    assert torch.isfinite(loss)


def test_loss_is_the_weighted_sum_of_its_terms():
    model = debug_model(overrides=["world_model.kl.scale=0.3", "world_model.loss_scales.discount=5"])
    torch.manual_seed(1)
    loss, m = model.loss(model.observe(random_batch({"image": image_space()}, gym.spaces.Discrete(3))))
    expected = 0.3 * m["kl_loss"] + m["image_loss"] + m["reward_loss"] + 5 * m["discount_loss"]
    torch.testing.assert_close(loss.detach(), expected)
    assert m["model_kl"] == pytest.approx(m["kl_loss"].item(), rel=1e-5)  # free = 0


@pytest.mark.parametrize("transform, expected", [("tanh", np.tanh), ("identity", lambda r: r), ("sign", np.sign)])
def test_preprocess_reward_transform_and_discount_target(transform, expected):
    model = debug_model(overrides=[f"env.reward_transform={transform}", "behavior.discount=0.9"])
    batch = random_batch({"image": image_space()}, gym.spaces.Discrete(3))
    data = model.preprocess(batch)
    np.testing.assert_allclose(data["reward"].numpy(), expected(batch["reward"]), rtol=1e-6)
    np.testing.assert_allclose(data["discount"].numpy(), 0.9 * (1 - batch["is_terminal"]), rtol=1e-6)
    assert data["image"].dtype == torch.uint8 and data["is_first"].dtype == torch.float32


def test_openl_video():
    model = debug_model()
    batch = random_batch({"image": image_space()}, gym.spaces.Discrete(3))
    video = model.openl_video(batch, n=2)
    assert video.shape == (L, 3 * 64, 2 * 64, 1) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[:, :64, :64], batch["image"][0])  # top row is the truth


def test_bf16_losses_stay_float32():
    model = debug_model(overrides=["precision=bf16"])
    loss, metrics = model.loss(model.observe(random_batch({"image": image_space()}, gym.spaces.Discrete(3))))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_unsupported_spaces_raise_clear_errors():
    with pytest.raises(ValueError, match="64"):
        debug_model(obs_space={"image": image_space(1, size=84)})
    with pytest.raises(TaskError, match="image"):
        debug_model(obs_space={"depth": vector_space()})
    with pytest.raises(TaskError, match="action space"):
        debug_model(act_space=gym.spaces.MultiBinary(3))


def test_official_init_glorot_weights_zero_biases():
    model = debug_model()
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert layers and all((m.bias == 0).all() for m in layers)
    linear = model.heads["reward"].mlp.net[0]
    bound = (6 / sum(linear.weight.shape)) ** 0.5
    assert linear.weight.abs().max() <= bound


def test_acting_observations_without_time_dim():
    model = debug_model()
    obs = {"image": np.zeros((5, 64, 64, 1), np.uint8), "is_first": np.ones(5, bool)}
    data = model.preprocess(obs)
    state = model.rssm.initial(5)
    post = model.rssm.post_step(state, torch.zeros(5, 3), model.encoder(data), data["is_first"])
    assert model.rssm.get_feat(post).shape == (5, model.rssm.feat_dim)
