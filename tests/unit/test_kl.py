"""KL balancing (Algorithm 2) and free nats on a hand-computed 2-latent, 3-class example."""

import math

import pytest
import torch
import torch.distributions as td

from reverie.world_model.kl import kl_loss

# Posterior q and prior p, one row per latent (2 latents × 3 classes).
POST = [[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]
PRIOR = [[1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]]
# KL per latent, by hand:
#   latent 1: 0.5·ln(0.5/(1/3)) + 2·0.25·ln(0.25/(1/3)) = 0.5·0.405465 + 0.5·(−0.287682) = 0.058892
#   latent 2: 0.1·ln(0.1/0.2) + 0.6·ln(0.6/0.2) + 0.3·ln(0.3/0.6)
#           = 0.4·(−0.693147) + 0.6·1.098612 = 0.381909
KL = 0.058892 + 0.381909  # 0.440800, summed over latents
# ∂KL/∂prior_logits = prior − post (softmax cross-entropy gradient):
D_PRIOR = [[1 / 3 - 0.5, 1 / 3 - 0.25, 1 / 3 - 0.25], [0.2 - 0.1, 0.2 - 0.6, 0.6 - 0.3]]
# ∂KL/∂post_logits_j = post_j · (ln(post_j / prior_j) − KL_latent):
#   latent 1: 0.5·(0.405465 − 0.058892), 0.25·(−0.287682 − 0.058892) twice
#   latent 2: 0.1·(−0.693147 − 0.381909), 0.6·(1.098612 − 0.381909), 0.3·(−0.693147 − 0.381909)
D_POST = [[0.173287, -0.086643, -0.086643], [-0.107506, 0.430022, -0.322517]]


def _logits(probs):
    # Leading batch dim of 1: [B=1, stoch=2, classes=3].
    return torch.tensor(probs).log()[None].requires_grad_(True)


@pytest.mark.parametrize("balance", [0.8, 0.3])
def test_value_loss_and_gradient_split(balance):
    post, prior = _logits(POST), _logits(PRIOR)
    loss, value = kl_loss(post, prior, balance=balance, free=0.0)
    assert value.item() == pytest.approx(KL, abs=1e-5)
    assert loss.item() == pytest.approx(KL, abs=1e-5)
    loss.backward()
    # The prior learns α times, the posterior (1 − α) times the KL gradient.
    torch.testing.assert_close(prior.grad[0], balance * torch.tensor(D_PRIOR), atol=1e-5, rtol=0)
    torch.testing.assert_close(post.grad[0], (1 - balance) * torch.tensor(D_POST), atol=1e-5, rtol=0)


def test_value_equals_torch_kl_on_state_dicts():
    torch.manual_seed(0)
    post = {"deter": torch.zeros(4, 5, 8), "logits": torch.randn(4, 5, 2, 3)}
    prior = {"deter": torch.zeros(4, 5, 8), "logits": torch.randn(4, 5, 2, 3)}
    independent = lambda x: td.Independent(td.OneHotCategorical(logits=x["logits"]), 1)  # noqa: E731
    expected = td.kl_divergence(independent(post), independent(prior)).mean()
    _, value = kl_loss(post, prior, balance=0.8, free=0.0)
    torch.testing.assert_close(value, expected)


def test_gaussian_state_dicts():
    torch.manual_seed(0)
    make = lambda: {"mean": torch.randn(3, 4), "std": torch.rand(3, 4) + 0.1}  # noqa: E731
    post, prior = make(), make()
    normal = lambda x: td.Independent(td.Normal(x["mean"], x["std"]), 1)  # noqa: E731
    loss, value = kl_loss(post, prior, balance=0.8, free=0.0)
    torch.testing.assert_close(value, td.kl_divergence(normal(post), normal(prior)).mean())
    torch.testing.assert_close(loss, value)


def test_no_balancing_is_the_plain_kl_with_full_gradient_to_both():
    post, prior = _logits(POST), _logits(PRIOR)
    loss, value = kl_loss(post, prior, balance=0.5, free=0.0)
    assert loss.item() == pytest.approx(KL, abs=1e-5) and value.item() == pytest.approx(KL, abs=1e-5)
    loss.backward()
    torch.testing.assert_close(prior.grad[0], torch.tensor(D_PRIOR), atol=1e-5, rtol=0)
    torch.testing.assert_close(post.grad[0], torch.tensor(D_POST), atol=1e-5, rtol=0)


@pytest.mark.parametrize("balance", [0.8, 0.5])
@pytest.mark.parametrize("free_avg", [True, False])
def test_below_free_nats_loss_is_constant_without_gradient(balance, free_avg):
    post, prior = _logits(POST), _logits(PRIOR)
    loss, value = kl_loss(post, prior, balance=balance, free=1.0, free_avg=free_avg)
    assert loss.item() == pytest.approx(1.0) and value.item() == pytest.approx(KL, abs=1e-5)
    loss.backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0


def test_free_avg_applies_to_the_batch_mean_or_per_element():
    # Two batch elements: KL 0.4408 (the hand example) and 0 (posterior = prior).
    post = torch.tensor([POST, PRIOR]).log().requires_grad_(True)
    prior = torch.tensor([PRIOR, PRIOR]).log()
    mean_first, _ = kl_loss(post, prior, balance=0.8, free=0.3, free_avg=True)
    assert mean_first.item() == pytest.approx(0.3)  # max(mean(0.4408, 0), 0.3) = max(0.2204, 0.3)
    max_first, _ = kl_loss(post, prior, balance=0.8, free=0.3, free_avg=False)
    assert max_first.item() == pytest.approx((KL + 0.3) / 2, abs=1e-5)  # mean(max(0.4408, 0.3), max(0, 0.3))
    max_first.backward()
    assert post.grad[0].abs().sum() > 0 and post.grad[1].abs().sum() == 0
    assert not math.isnan(post.grad.sum().item())


@pytest.mark.parametrize("free_avg", [True, False])
def test_no_balancing_clamps_per_element_whatever_free_avg_says(free_avg):
    # Official code (common/nets.py, kl_loss, balance == 0.5): tf.maximum(value, free).mean(),
    # with no free_avg branch. Batch KLs 0.4408 and 0 with free 0.3 → mean(0.4408, 0.3).
    post = torch.tensor([POST, PRIOR]).log().requires_grad_(True)
    prior = torch.tensor([PRIOR, PRIOR]).log().requires_grad_(True)
    loss, value = kl_loss(post, prior, balance=0.5, free=0.3, free_avg=free_avg)
    assert loss.item() == pytest.approx((KL + 0.3) / 2, abs=1e-5)
    assert value.item() == pytest.approx(KL / 2, abs=1e-5)
    loss.backward()
    # Only the element above the free nats sends a gradient, half of the single-element one.
    torch.testing.assert_close(post.grad[0], torch.tensor(D_POST) / 2, atol=1e-5, rtol=0)
    assert post.grad[1].abs().sum() == 0 and prior.grad[1].abs().sum() == 0
