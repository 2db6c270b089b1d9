"""Distributions: straight-through one-hot, Normal, Bernoulli, truncated normal."""

import math

import pytest
import torch
import torch.distributions as td

from reverie.nn.distributions import Bernoulli, Normal, OneHotDist, TruncNormalDist


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_onehot_sample_is_exactly_one_hot_with_straight_through_gradient():
    logits = torch.randn(5, 4, 3, requires_grad=True)
    sample = OneHotDist(logits, event_dims=2).sample()
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample.detach().sum(-1), torch.ones(5, 4))
    weights = torch.randn(3)
    (sample * weights).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_onehot_mode_is_argmax_with_gradient():
    logits = torch.tensor([[0.1, 2.0, -1.0]], requires_grad=True)
    mode = OneHotDist(logits).mode()
    assert torch.equal(mode.detach(), torch.tensor([[0.0, 1.0, 0.0]]))
    (mode * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_onehot_matches_torch():
    logits, other = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    ours, theirs = OneHotDist(logits, 2), td.Independent(td.OneHotCategorical(logits=logits), 1)
    value = theirs.sample()
    torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())
    expected = td.kl_divergence(theirs, td.Independent(td.OneHotCategorical(logits=other), 1))
    torch.testing.assert_close(ours.kl(OneHotDist(other, 2)), expected)


def test_onehot_sample_frequencies():
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(20000, 3)
    freq = OneHotDist(logits).sample().mean(0)
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.02, rtol=0)


def test_normal_matches_torch():
    mean, std = torch.randn(3, 4), torch.rand(3, 4) + 0.1
    mean2, std2 = torch.randn(3, 4), torch.rand(3, 4) + 0.1
    ours, theirs = Normal(mean, std, 1), td.Independent(td.Normal(mean, std), 1)
    x = torch.randn(3, 4)
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())
    expected = td.kl_divergence(theirs, td.Independent(td.Normal(mean2, std2), 1))
    torch.testing.assert_close(ours.kl(Normal(mean2, std2, 1)), expected)
    assert Normal(mean, 1.0).log_prob(mean).shape == (3, 4)


@pytest.mark.parametrize("std", [1.0, 2.5])
def test_normal_constant_std_log_prob_matches_torch(std):
    # A number std takes the path without std's tensor division and log.
    mean, x = torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4)
    theirs = td.Independent(td.Normal(mean, torch.full_like(mean, std)), 2).log_prob(x)
    ours = Normal(mean, std, 2).log_prob(x)
    torch.testing.assert_close(ours, theirs)
    (grad,) = torch.autograd.grad(ours.sum(), mean)
    torch.testing.assert_close(grad, (x - mean.detach()) / std**2)
    assert Normal(torch.zeros(()), 1.0).log_prob(torch.ones(())).item() == pytest.approx(-0.5 - 0.5 * math.log(2 * math.pi))


def test_detached_distributions_keep_values_and_drop_gradients():
    logits = torch.randn(5, 3, 4, requires_grad=True)
    dist = OneHotDist(logits, event_dims=2)
    other = OneHotDist(torch.randn(5, 3, 4), event_dims=2)
    frozen = dist.detach()
    assert not frozen.log_probs.requires_grad and not frozen.probs.requires_grad
    torch.testing.assert_close(frozen.kl(other), dist.kl(other).detach(), rtol=0, atol=0)
    torch.testing.assert_close(frozen.entropy(), dist.entropy().detach(), rtol=0, atol=0)
    mean, std = torch.randn(4, requires_grad=True), torch.rand(4) + 0.1
    for gauss in (Normal(mean, std, 1), Normal(mean, 1.0, 1)):
        x = torch.randn(4)
        assert not gauss.detach().log_prob(x).requires_grad
        torch.testing.assert_close(gauss.detach().log_prob(x), gauss.log_prob(x).detach(), rtol=0, atol=0)


def test_normal_rsample_has_gradient():
    mean = torch.zeros(4, requires_grad=True)
    Normal(mean, 1.0).rsample().sum().backward()
    torch.testing.assert_close(mean.grad, torch.ones(4))


def test_bernoulli_soft_target_log_prob():
    logits = torch.tensor([0.0, 2.0, -30.0])
    target = torch.tensor([0.5, 0.99, 0.0])
    p = torch.sigmoid(logits)
    expected = target * p.log() + (1 - target) * (1 - p).log()
    torch.testing.assert_close(Bernoulli(logits).log_prob(target), expected)
    assert torch.isfinite(Bernoulli(torch.tensor([100.0])).log_prob(torch.tensor([0.0]))).all()
    torch.testing.assert_close(Bernoulli(logits).mean, p)


def test_trunc_normal_samples_in_bounds_and_reparameterised():
    mean = torch.tensor([[0.9, -0.5]], requires_grad=True)
    std = torch.tensor([[0.5, 2.0]]).expand(5000, 2)
    dist = TruncNormalDist(mean.expand(5000, 2), std)
    sample = dist.rsample()
    assert sample.min() >= -1 and sample.max() <= 1
    sample.sum().backward()
    assert torch.isfinite(mean.grad).all() and mean.grad.abs().sum() > 0
    assert dist.log_prob(sample.detach()).shape == (5000,)
    torch.testing.assert_close(dist.mode()[0], torch.tensor([0.9, -0.5]))


def test_trunc_normal_density_and_entropy_by_quadrature():
    mean, std = torch.tensor([0.3]), torch.tensor([0.7])
    dist = TruncNormalDist(mean, std)
    x = torch.linspace(-1, 1, 20001)[:, None]
    log_p = TruncNormalDist(mean.expand(len(x), 1), std.expand(len(x), 1)).log_prob(x)
    p, dx = log_p.exp(), 2 / 20000
    assert abs(p.sum().item() * dx - 1) < 1e-3
    assert abs((-(p * log_p).sum() * dx).item() - dist.entropy().item()) < 1e-3
    # Wide std tends to the uniform on [-1, 1]: entropy → log 2.
    assert abs(TruncNormalDist(torch.zeros(1), torch.full((1,), 1e3)).entropy().item() - math.log(2)) < 1e-4
    assert dist.log_prob(torch.tensor([1.5])).item() == -math.inf
