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
from reverie.bench import synthetic_batch
from reverie.config import RSSMConfig, load_config
from reverie.nn.distributions import OneHotDist
from reverie.nn.layers import ConvDecoder, ConvEncoder, conv_transpose2d_phases
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


def test_post_step_equals_the_posterior_of_obs_step():
    torch.manual_seed(0)
    rssm = RSSM(RSSMConfig(deter=16, hidden=12, stoch=5, classes=4), embed_dim=10, action_dim=3)
    state = {k: torch.randn_like(v) for k, v in rssm.initial(4).items()}
    action, embed, is_first = torch.randn(4, 3), torch.randn(4, 10), torch.tensor([0.0, 1.0, 0.0, 1.0])
    post, _ = rssm.obs_step(state, action, embed, is_first, sample=False)
    fast = rssm.post_step(state, action, embed, is_first, sample=False)
    assert fast.keys() == post.keys()
    for key in post:
        torch.testing.assert_close(fast[key], post[key], rtol=0, atol=0)


def test_regrouped_posterior_layer_equals_the_concatenated_one():
    torch.manual_seed(0)
    rssm = RSSM(RSSMConfig(deter=16, hidden=12, stoch=5, classes=4), embed_dim=10, action_dim=3)
    state, action, embed = rssm.initial(4), torch.randn(4, 3), torch.randn(4, 10)
    post, prior = rssm.obs_step(state, action, embed, torch.zeros(4), sample=False)
    logits = rssm.obs_out(torch.cat([prior["deter"], embed], -1)).unflatten(-1, (5, 4))
    torch.testing.assert_close(post["logits"], logits, rtol=1e-5, atol=1e-6)
    # observe() projects the embedding for all steps at once: same posterior as one step.
    seq_post, _ = rssm.observe(embed[:, None], action[:, None], torch.zeros(4, 1), state)
    torch.testing.assert_close(seq_post["logits"][:, 0], logits, rtol=1e-5, atol=1e-6)


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


def _losses(overrides, preset="debug"):
    """The losses of one Agent.train on a fixed batch from fixed weights and seed."""
    config = load_config(preset, ["device=cpu", *overrides])
    torch.manual_seed(0)
    agent = Agent(config, IMAGE, gym.spaces.Discrete(18))
    batch = synthetic_batch(config, IMAGE, gym.spaces.Discrete(18), seed=0)
    torch.manual_seed(1)
    return agent.train(batch)


def _assert_losses_close(fast, reference, rel, names=LOSSES):
    for name in names:
        assert fast[name] == pytest.approx(reference[name], rel=rel, abs=rel), name


def test_bf16_losses_within_tolerance_of_fp32():
    # bf16 has an 8-bit mantissa: ~0.4 % per rounding. The losses are computed in fp32 from
    # bf16 network outputs, so the world-model losses agree to about a percent.
    fast, reference = _losses(["precision=bf16"]), _losses([])
    _assert_losses_close(fast, reference, rel=0.03, names=LOSSES[:4] + ("actor_ent",))
    # The behaviour losses come from imagined trajectories of sampled latents and actions,
    # whose bf16 probabilities differ in the third digit: where a sample lands differently
    # the trajectory differs, and Reinforce multiplies the return difference by
    # log π ≈ −ln 18 ≈ −2.9. Measured on this batch: returns 4 %, actor loss 10 % apart.
    _assert_losses_close(fast, reference, rel=0.15, names=("actor_loss", "critic_loss"))


@pytest.mark.slow
def test_compiled_losses_within_tolerance_of_eager():
    inductor = pytest.importorskip("torch._inductor.config")
    # Compiled code draws its random numbers differently; fall back to eager RNG so that
    # both runs sample the same latents and actions.
    with inductor.patch(fallback_random=True):
        compiled = _losses(["compile=true"])
    _assert_losses_close(compiled, _losses([]), rel=1e-3)


def test_bf16_acting_copy_acts_as_autocast_and_follows_updates():
    # Under bf16 the policy uses cached bf16 copies of the acting networks' matmul weights;
    # it must give the same latent and action as autocast over the fp32 weights, also after
    # an update changed those weights.
    config = load_config("debug", ["device=cpu", "precision=bf16"])
    torch.manual_seed(0)
    agent = Agent(config, IMAGE, gym.spaces.Discrete(18))
    batch = synthetic_batch(config, IMAGE, gym.spaces.Discrete(18), seed=0)
    obs = {k: v[:2, 0] for k, v in batch.items() if k not in ("action", "is_terminal")}
    assert agent._acting is not None

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
