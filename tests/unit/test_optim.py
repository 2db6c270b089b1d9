"""The optimizer wrapper: decoupled weight decay, clipping, schedules, non-finite skip.

Built as the agent builds them (``reverie.agent.build_optimizer``: an ``OptConfig`` section, its
``lr`` schedule string made the callable ``Optimizer`` takes)."""

import io

import pytest
import torch
from torch import nn

from reverie.agent import build_optimizer
from reverie.config import OptConfig
from reverie.nn.optim import Optimizer


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 2))


def test_zero_gradient_step_shrinks_every_parameter_by_exactly_one_minus_wd():
    net, other = _net(0), _net(1)
    before = [p.detach().clone() for p in net.parameters()]
    other_before = [p.detach().clone() for p in other.parameters()]
    opt = build_optimizer("actor", net.parameters(), OptConfig(lr=1e-3, weight_decay=1e-6))
    build_optimizer("critic", other.parameters(), OptConfig(lr=1e-3))  # exists, does not step
    loss = 0.0 * sum(p.sum() for p in net.parameters())  # zero gradient on every parameter
    metrics = opt.step(loss, step=0)
    assert float(metrics["actor_grad_norm"]) == 0.0
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p.detach(), b * (1.0 - 1e-6))  # not lr-scaled (AdamW would be)
        assert not torch.equal(p.detach(), b)
    for p, b in zip(other.parameters(), other_before):
        assert torch.equal(p.detach(), b)


def _global_norm(tensors):
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def _gradients(net, scale):
    loss = scale * net(torch.ones(1, 3)).sum()
    return [g.detach() for g in torch.autograd.grad(loss, list(net.parameters()))]


def test_clips_the_global_norm_and_reports_the_unclipped_one():
    # Adam's first moment after one step is (1 − β1) · g: it shows the gradient Adam was given.
    beta1 = 0.9
    for clip, scale in ((1e-3, 1e6), (100.0, 1e6), (100.0, 1e-3), (0.0, 1e6)):
        net = _net()
        grads = _gradients(_net(), scale)  # the same weights: the same gradients
        norm = _global_norm(grads)
        opt = build_optimizer("model", net.parameters(), OptConfig(lr=1e-3, clip=clip, weight_decay=0.0))
        metrics = opt.step(scale * net(torch.ones(1, 3)).sum(), step=0)
        assert float(metrics["model_grad_norm"]) == pytest.approx(norm, rel=1e-5)  # before clipping
        given = [opt.adam.state[p]["exp_avg"] / (1 - beta1) for p in net.parameters()]
        expected = min(norm, clip) if clip > 0 else norm  # clip 0: no clipping
        assert _global_norm(given) == pytest.approx(expected, rel=1e-4), (clip, scale)
        for g, want in zip(given, grads):  # the direction is kept
            torch.testing.assert_close(g, want * (expected / norm), rtol=1e-4, atol=1e-12)
        assert all(p.grad is None for p in net.parameters())  # cleared after the step


def test_learning_rate_follows_the_schedule():
    net = _net()
    opt = build_optimizer("actor", net.parameters(), OptConfig(lr="linear(1.0,0.0,10)"))
    opt.step(net(torch.ones(1, 3)).sum(), step=5)
    assert opt.adam.param_groups[0]["lr"] == 0.5
    # The optimizer itself takes any callable step -> lr (it parses no schedule strings).
    plain = Optimizer("actor", net.parameters(), lambda step: 0.25 * step, eps=1e-5, clip=100.0, weight_decay=0.0)
    plain.step(net(torch.ones(1, 3)).sum(), step=3)
    assert plain.adam.param_groups[0]["lr"] == 0.75


def test_non_finite_gradient_skips_the_step():
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    opt = build_optimizer("critic", net.parameters(), OptConfig())
    metrics = opt.step(float("nan") * net(torch.ones(1, 3)).sum(), step=0)
    assert float(metrics["critic_skipped"]) == 1.0
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip():
    net = _net()
    opt = build_optimizer("actor", net.parameters(), OptConfig(lr="linear(1e-3,1e-4,10)"))
    for step in range(3):
        opt.step(net(torch.full((1, 3), step + 1.0)).square().sum(), step=step)
    copy = _net(1)
    copy.load_state_dict(net.state_dict())
    other = build_optimizer("actor", copy.parameters(), OptConfig(lr="linear(1e-3,1e-4,10)"))
    buffer = io.BytesIO()  # through bytes, as a checkpoint does (in memory, load would share tensors)
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    a, b = opt.adam.state_dict(), other.adam.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys() and len(a["state"]) == 4
    for index, state in a["state"].items():
        assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
        for key, value in state.items():
            assert torch.equal(value, b["state"][index][key]), (index, key)
    assert int(a["state"][0]["step"]) == 3
    # Restored, the next step is the same step.
    for optimizer, module in ((opt, net), (other, copy)):
        optimizer.step(module(torch.ones(1, 3)).square().sum(), step=3)
    for p, q in zip(net.parameters(), copy.parameters()):
        assert torch.equal(p, q)


def test_skipped_step_leaves_moments_and_step_count_after_a_good_step():
    net = _net()
    opt = build_optimizer("model", net.parameters(), OptConfig(weight_decay=1e-2))
    opt.step(net(torch.ones(1, 3)).sum(), step=0)
    params = [p.detach().clone() for p in net.parameters()]
    state = {k: v.clone() for k, v in opt.adam.state[next(net.parameters())].items()}
    metrics = opt.step(float("inf") * net(torch.ones(1, 3)).sum(), step=1)
    assert float(metrics["model_skipped"]) == 1.0
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), params))  # no decay either
    for key, value in opt.adam.state[next(net.parameters())].items():
        assert torch.equal(value, state[key]), key
    opt.step(net(torch.ones(1, 3)).sum(), step=2)
    assert int(opt.adam.state[next(net.parameters())]["step"]) == 2


def test_adam_epsilon_is_the_official_codes_epsilon_hat():
    """Keras' Adam adds ε to √v before the bias correction: the first update of an element
    is lr·g / (|g| + ε/√(1 − β2)), by hand 0.2403·lr for g = 1e-4, ε = 1e-5 (torch's own ε
    would give 0.909·lr). Later steps and a resumed optimizer keep the bias-correction step."""
    param = nn.Parameter(torch.zeros(1))
    opt = build_optimizer("actor", [param], OptConfig(lr=1e-3, eps=1e-5, clip=0.0, weight_decay=0.0))
    param.grad = torch.tensor([1e-4])
    opt.step(None, step=0)
    expected = -1e-3 * 1e-4 / (1e-4 + 1e-5 / (1 - 0.999) ** 0.5)
    assert abs(param.detach().item() - expected) < 1e-6 * abs(expected)  # float32
    restored = build_optimizer("actor", [param], OptConfig(lr=1e-3, eps=1e-5, clip=0.0, weight_decay=0.0))
    restored.load_state_dict(opt.state_dict())
    assert restored.adam_steps == opt.adam_steps == 1
