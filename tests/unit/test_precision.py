"""Speed options change speed, not results: each fast path against its reference.

Exact rewrites (matmul for the 1×1 transposed conv, channels-last, the regrouped posterior
layer, inverse-CDF sampling, fused Adam) agree with the plain computation to float
rounding; bf16 autocast and torch.compile give world-model and actor-critic losses within
tolerance of fp32 on a fixed batch and fixed weights.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from reverie.agent import Agent
from reverie.config import RSSMConfig, load_config
from reverie.nn.distributions import OneHotDist
from reverie.nn.layers import ConvDecoder, ConvEncoder, conv_transpose2d_phases, preprocess_image
from reverie.tools.timing import synthetic_batch
from reverie.world_model.rssm import RSSM

IMAGE = {"image": gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
LOSSES = ("image_loss", "reward_loss", "discount_loss", "model_kl", "actor_loss", "critic_loss", "actor_ent")


def _conv_pair(cls, *args):
    nets = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        nets.append(cls(*args, channels_last=channels_last))
    return nets


def test_decoder_first_layer_as_matmul_equals_the_transposed_conv():
    (decoder, _) = _conv_pair(ConvDecoder, 20, (64, 64, 1), 4, [5, 5, 6, 6])
    feat = torch.randn(3, 20)
    reference = decoder.net(decoder.linear(feat)[..., None, None])
    torch.testing.assert_close(decoder(feat), reference, rtol=1e-5, atol=1e-5)


def test_channels_last_convolutions_give_the_same_values_and_gradients():
    n = ConvEncoder.SMALL_BATCH + 2  # the convolution path, not the small-batch patches
    image = torch.rand(n, 1, 64, 64) - 0.5
    for nets, x in ((_conv_pair(ConvEncoder, (64, 64, 1), 4, [4, 4, 4, 4]), image),
                    (_conv_pair(ConvEncoder, (64, 64, 3), 4, [4, 4, 4, 4]), torch.rand(n, 3, 64, 64)),
                    (_conv_pair(ConvDecoder, 20, (64, 64, 1), 4, [5, 5, 6, 6]), torch.randn(n, 20))):
        outs = [net(x) for net in nets]
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        grads = [torch.autograd.grad(out.square().sum(), list(net.parameters())) for out, net in zip(outs, nets)]
        for a, b in zip(*grads):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,channels", [(6, 1), (5, 3), (6, 4)])
def test_sub_pixel_transposed_conv_equals_the_transposed_conv(kernel, channels):
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(8, channels, kernel, stride=2)
    x = torch.randn(3, 8, 7, 9, requires_grad=True)
    reference = layer(x)
    fast = conv_transpose2d_phases(x, layer)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    inputs = [x, *layer.parameters()]
    for a, b in zip(torch.autograd.grad(reference.square().sum(), inputs),
                    torch.autograd.grad(fast.square().sum(), inputs)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_decoder_with_sub_pixel_convs_equals_the_all_transposed_decoder():
    torch.manual_seed(0)
    decoder = ConvDecoder(20, (64, 64, 1), 4, [5, 5, 6, 6])  # channels 16 → 8 → 4 → 1
    feat = torch.randn(ConvEncoder.SMALL_BATCH, 20)
    fast = decoder(feat)
    decoder.PHASES_MAX_CHANNELS = 0  # every layer as a transposed conv
    torch.testing.assert_close(fast, decoder(feat), rtol=1e-5, atol=1e-5)


def test_encoder_runs_channels_last_from_the_first_layer():
    # A 1-channel image counts as contiguous in both layouts; unless its strides say NHWC,
    # the first conv runs NCHW and every later layer converts (forward and backward).
    encoder = ConvEncoder((64, 64, 1), 4, [4, 4, 4, 4])
    seen = []
    for layer in encoder.net:
        if isinstance(layer, torch.nn.Conv2d):
            layer.register_forward_hook(lambda m, inp, out: seen.append((inp[0].stride(1), out.stride(1))))
    encoder(torch.rand(ConvEncoder.SMALL_BATCH + 1, 1, 64, 64))
    assert seen == [(1, 1)] * 4  # channel stride 1 in and out of every conv: NHWC throughout


@pytest.mark.parametrize("channels", [1, 3])
def test_small_batch_patch_convolutions_equal_the_conv_layers(channels):
    torch.manual_seed(0)
    encoder = ConvEncoder((64, 64, channels), 8, [4, 4, 4, 4])
    for n in (1, ConvEncoder.SMALL_BATCH):
        image = torch.rand(n, channels, 64, 64) - 0.5
        reference = encoder.net(image).permute(0, 2, 3, 1).flatten(1)  # the conv path's layout
        patches = encoder(image)  # n <= SMALL_BATCH: patch matrix products
        torch.testing.assert_close(patches, reference, rtol=1e-5, atol=1e-5)
        params = list(encoder.parameters())
        for a, b in zip(torch.autograd.grad(reference.square().sum(), params),
                        torch.autograd.grad(patches.square().sum(), params)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_post_step_equals_the_posterior_of_observe():
    torch.manual_seed(0)
    rssm = RSSM(RSSMConfig(deter=16, hidden=12, stoch=5, classes=4), embed_dim=10, action_dim=3)
    state = {k: torch.randn_like(v) for k, v in rssm.initial(4).items()}
    action, embed, is_first = torch.randn(4, 3), torch.randn(4, 10), torch.tensor([0.0, 1.0, 0.0, 1.0])
    post, _ = rssm.observe(embed[:, None], action[:, None], is_first[:, None], state, draw="mode")
    post = {k: v[:, 0] for k, v in post.items()}
    fast = rssm.post_step(state, action, embed, is_first, draw="mode")
    assert fast.keys() == post.keys()
    for key in post:
        torch.testing.assert_close(fast[key], post[key], rtol=0, atol=0)


def test_regrouped_posterior_layer_equals_the_concatenated_one():
    torch.manual_seed(0)
    rssm = RSSM(RSSMConfig(deter=16, hidden=12, stoch=5, classes=4), embed_dim=10, action_dim=3)
    state, action, embed = rssm.initial(4), torch.randn(4, 3), torch.randn(4, 10)
    # observe() projects the embedding for all steps at once and adds the deter share per
    # step: the same posterior as the layer applied to concat(deter, embed).
    post, prior = rssm.observe(embed[:, None], action[:, None], torch.zeros(4, 1), state, draw="mode")
    logits = rssm.posterior_head(torch.cat([prior["deter"][:, 0], embed], -1)).unflatten(-1, (5, 4))
    torch.testing.assert_close(post["logits"][:, 0], logits, rtol=1e-5, atol=1e-6)


def test_inverse_cdf_sampling_matches_the_class_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2])
    samples = OneHotDist(probs.log().expand(200_000, 4)).sample()
    assert torch.equal(samples.sum(-1), torch.ones(200_000))
    torch.testing.assert_close(samples.mean(0), probs, atol=5e-3, rtol=0)
    assert samples[:, 1].sum() == 0  # a zero-probability class is never drawn


def test_fused_adam_equals_foreach_adam():
    torch.manual_seed(0)
    params = [torch.randn(50, 7, requires_grad=True), torch.randn(7, requires_grad=True)]
    results = []
    for fused in (False, True):
        copies = [p.detach().clone().requires_grad_() for p in params]
        adam = torch.optim.Adam(copies, lr=1e-3, eps=1e-5, fused=fused)
        for step in range(3):
            for p, q in zip(copies, params):
                p.grad = torch.sin(q.detach() * (step + 1))
            adam.step()
        results.append(copies)
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


# Fast paths are compared on a structured batch: real Pong frames sampled from the replay of a
# short real run, with the weights of its checkpoint after ~100 updates. On uniform noise any
# decoder whose output is near zero scores within a few nats of the real one, and the image
# loss is dominated by its constant floor ½·log(2π) per pixel (3,764 nats here).
IMAGE_FLOOR = 0.5 * np.log(2 * np.pi) * 64 * 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from reverie.checkpoint import load_checkpoint
    from reverie.replay import Replay
    from reverie.run.train import train

    logdir = tmp_path_factory.mktemp("pong")
    config = load_config("atari,debug", ["task=atari_pong", "device=cpu", "run.steps=300", "run.prefill=100",
                                         "run.train_every=2", "run.eval_every=0", "run.log_every=300",
                                         "run.checkpoint_every=300"])
    train(config, logdir, quiet=True)
    replay = Replay.load(logdir / "replay", config.replay.capacity, config.replay.chunk, seed=0)
    weights = load_checkpoint(logdir).tensors["agent"]
    return config, weights, replay.sample(config.replay.batch, config.replay.length)


def _agent(trained, overrides):
    from reverie.envs import make_env

    config, weights, _ = trained
    config = load_config(None, overrides, base=config.to_dict())
    env = make_env(config)
    agent = Agent(config, env.obs_space, env.act_space)
    env.close()
    agent.load_state_dict(weights)
    return agent


def _compare(trained, overrides, rel_world_model, rel_behavior):
    """World-model losses (the image loss above its floor), the decoder's means on the same
    features, and one full update's losses, of ``overrides`` against the fp32 eager agent."""
    batch = trained[2]
    agents = {"fast": _agent(trained, overrides), "reference": _agent(trained, [])}
    losses, feats = {}, {}
    for name, agent in agents.items():
        torch.manual_seed(1)
        observed = agent.world_model.observe(batch)
        post, losses[name] = observed.post, agent.world_model.loss(observed)[1]
        feats[name] = agent.world_model.rssm.get_feat(post).detach()
    above = {name: float(m["image_loss"]) - IMAGE_FLOOR for name, m in losses.items()}
    target = preprocess_image(torch.as_tensor(batch["image"]))
    zeros = 0.5 * float(target.square().flatten(2).sum(-1).mean())  # a decoder that outputs 0
    assert above["reference"] < 0.5 * zeros, (above, zeros)  # a trained decoder on real frames
    assert above["fast"] == pytest.approx(above["reference"], rel=rel_world_model), (above, zeros)
    for name in ("reward_loss", "kl_loss", "model_kl"):
        assert float(losses["fast"][name]) == pytest.approx(float(losses["reference"][name]), rel=rel_world_model)
    with torch.no_grad():
        means = {}
        for name, agent in agents.items():
            with agent._autocast():
                means[name] = agent.world_model.heads["decoder"](feats["reference"])["image"].mean.float()
    assert means["reference"].std() > 0.05  # the means show the frames, not a constant
    torch.testing.assert_close(means["fast"], means["reference"], rtol=0, atol=0.02)
    torch.manual_seed(1)
    fast = agents["fast"].train(batch)
    torch.manual_seed(1)
    reference = agents["reference"].train(batch)
    _assert_losses_close(fast, reference, rel_world_model, names=LOSSES[:4] + ("actor_ent",))
    _assert_losses_close(fast, reference, rel_behavior, names=("actor_loss", "critic_loss"))
    return above


def _assert_losses_close(fast, reference, rel, names=LOSSES):
    for name in names:
        assert fast[name] == pytest.approx(reference[name], rel=rel, abs=rel), name


def test_bf16_losses_within_tolerance_of_fp32(trained):
    # bf16 has an 8-bit mantissa: ~0.4 % per rounding. The losses are computed in fp32 from
    # bf16 network outputs. Measured (2-core VM): image loss above its floor 24.302 vs 24.294
    # nats, decoder means at most 0.0036 apart (pixel values in [−0.5, 0.5]).
    # The behaviour losses come from imagined trajectories of sampled latents and actions,
    # whose bf16 probabilities differ in the third digit: where a sample lands differently
    # the trajectory differs, and Reinforce multiplies the return difference by
    # log π ≈ −ln 18 ≈ −2.9, so they get a wider tolerance.
    _compare(trained, ["precision=bf16"], rel_world_model=0.02, rel_behavior=0.15)


@pytest.mark.slow
def test_compiled_losses_within_tolerance_of_eager(trained):
    inductor = pytest.importorskip("torch._inductor.config")
    # Compiled code draws its random numbers differently; fall back to eager RNG so that
    # both runs sample the same latents and actions. Fused kernels still round differently,
    # and over 15 imagined steps of sampled actions a trajectory can branch: measured on this
    # batch, actor loss 0.256 vs 0.277, so the behaviour losses get bf16's tolerance.
    with inductor.patch(fallback_random=True):
        _compare(trained, ["compile=true"], rel_world_model=1e-3, rel_behavior=0.15)


def test_bf16_acting_copy_acts_as_autocast_and_follows_updates():
    # Under bf16 the policy uses cached bf16 copies of the acting networks' matmul weights;
    # it must give the same latent and action as autocast over the fp32 weights, also after
    # an update changed those weights.
    config = load_config("debug", ["device=cpu", "precision=bf16"])
    torch.manual_seed(0)
    agent = Agent(config, IMAGE, gym.spaces.Discrete(18))
    batch = synthetic_batch(config, IMAGE, gym.spaces.Discrete(18), seed=0)
    obs = {k: v[:4, 0] for k, v in batch.items() if k not in ("action", "is_terminal")}  # 4 envs: bf16 acting
    assert agent._acting is not None and not agent._acts_in_fp32(4)

    def act_both():
        torch.manual_seed(3)  # the posterior latent is sampled
        cached = agent.policy(obs, None, "eval")
        copy, agent._acting = agent._acting, None
        try:
            torch.manual_seed(3)
            plain = agent.policy(obs, None, "eval")
        finally:
            agent._acting = copy
        np.testing.assert_array_equal(cached[0], plain[0])
        for key in cached[1][0]:
            torch.testing.assert_close(cached[1][0][key], plain[1][0][key], rtol=0, atol=0)
        return cached[1][0]["deter"]

    before = act_both()
    agent.train(batch)
    after = act_both()
    assert not torch.equal(before, after)  # the update changed what the copy computes
    linear = agent._acting.copies[1].gru.linear
    assert linear.weight.dtype == torch.bfloat16 and not linear.weight.requires_grad
    assert agent._acting.copies[1].gru.norm.weight.dtype == torch.float32  # LayerNorm stays fp32


@pytest.mark.parametrize("envs", [1, 3])
def test_bf16_on_the_cpu_acts_in_fp32_below_four_envs(envs):
    # Below 4 envs a bf16 policy call on the CPU is slower than fp32 (docs/SPEED.md, "Acting"), so
    # it runs in fp32: the same actions and latent as an fp32 agent with the same weights, and
    # the bf16 copy is never refreshed (no re-cast after updates); from 4 envs it acts in bf16.
    from reverie.agent import BF16_CPU_ACTING_MIN_ENVS

    assert BF16_CPU_ACTING_MIN_ENVS == 4
    bf16 = Agent(load_config("debug", ["device=cpu", "precision=bf16"]), IMAGE, gym.spaces.Discrete(18))
    fp32 = Agent(load_config("debug", ["device=cpu"]), IMAGE, gym.spaces.Discrete(18))
    fp32.load_state_dict(bf16.state_dict())
    batch = synthetic_batch(bf16.config, IMAGE, gym.spaces.Discrete(18), seed=0)
    obs = {k: v[:envs, 0] for k, v in batch.items() if k not in ("action", "is_terminal")}
    results = []
    for agent in (bf16, fp32):
        torch.manual_seed(3)
        results.append(agent.policy(obs, None, "train"))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for key, value in results[0][1][0].items():
        assert value.dtype == torch.float32 and torch.equal(value, results[1][1][0][key]), key
    assert bf16._acting.key == []  # the bf16 copy was never used, so never cast
    wider = {k: np.concatenate([v] * 4)[:4] for k, v in obs.items()}
    bf16.policy(wider, None, "train")
    assert bf16._acting.key != []  # 4 envs: the bf16 copy acts


@pytest.mark.parametrize("compiler", ["missing", "present"])
def test_compile_without_a_cpp_compiler_warns_and_runs_uncompiled(compiler, monkeypatch, tmp_path):
    # compile=true (the cartpole preset's default) on a CPU machine without g++: one warning
    # naming the fix, and the agent trains uncompiled instead of failing at its first update.
    # Twin: with the compiler found, the agent compiles (its loops are torch.compile'd).
    from reverie.utils import cpu_compiler

    if compiler == "missing":
        monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    else:
        monkeypatch.delenv("CXX", raising=False)
        if cpu_compiler() is None:
            pytest.skip("no C++ compiler on this machine")
    config = load_config("gym,cartpole", ["device=cpu", "threads=1", "replay.batch=2", "replay.length=4"])
    assert config.compile  # the preset's default
    spaces = ({"vector": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)}, gym.spaces.Discrete(2))
    if compiler == "missing":
        with pytest.warns(UserWarning, match="no C..? compiler found.*compile=false"):
            agent = Agent(config, *spaces)
        assert not agent.compiles and not agent.world_model.rssm.loop_compiled
        assert agent.behavior.compiled_rollout is None
        metrics = agent.train(synthetic_batch(config, *spaces))
        assert np.isfinite(metrics["model_loss"])
    else:
        agent = Agent(config, *spaces)
        assert agent.compiles and agent.world_model.rssm.loop_compiled
        assert agent.behavior.compiled_rollout is not None
