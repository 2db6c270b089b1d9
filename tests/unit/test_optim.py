"""The optimizer wrapper: decoupled weight decay, clipping, schedules, non-finite skip."""

import torch
from torch import nn

from reverie.config import OptConfig
from reverie.nn.optim import Optimizer


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 2))


def test_zero_gradient_step_shrinks_every_parameter_by_exactly_one_minus_wd():
    net, other = _net(0), _net(1)
    before = [p.detach().clone() for p in net.parameters()]
    other_before = [p.detach().clone() for p in other.parameters()]
    opt = Optimizer("actor", net.parameters(), OptConfig(lr=1e-3, weight_decay=1e-6))
    Optimizer("critic", other.parameters(), OptConfig(lr=1e-3))  # exists, does not step
    loss = 0.0 * sum(p.sum() for p in net.parameters())  # zero gradient on every parameter
    metrics = opt.step(loss, step=0)
    assert float(metrics["actor_grad_norm"]) == 0.0
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p.detach(), b * (1.0 - 1e-6))  # not lr-scaled (AdamW would be)
        assert not torch.equal(p.detach(), b)
    for p, b in zip(other.parameters(), other_before):
        assert torch.equal(p.detach(), b)


def test_reports_the_unclipped_norm_and_clears_gradients():
    net = _net()
    opt = Optimizer("model", net.parameters(), OptConfig(lr=1.0, clip=1e-3, weight_decay=0.0))
    loss = 1e6 * net(torch.ones(1, 3)).sum()
    metrics = opt.step(loss, step=0)
    assert float(metrics["model_grad_norm"]) > 1.0
    assert all(p.grad is None for p in net.parameters())  # cleared after the step


def test_learning_rate_follows_the_schedule():
    net = _net()
    opt = Optimizer("actor", net.parameters(), OptConfig(lr="linear(1.0,0.0,10)"))
    opt.step(net(torch.ones(1, 3)).sum(), step=5)
    assert opt.adam.param_groups[0]["lr"] == 0.5


def test_non_finite_gradient_skips_the_step():
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    opt = Optimizer("critic", net.parameters(), OptConfig())
    metrics = opt.step(float("nan") * net(torch.ones(1, 3)).sum(), step=0)
    assert float(metrics["critic_skipped"]) == 1.0
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), before))
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip():
    net = _net()
    opt = Optimizer("actor", net.parameters(), OptConfig())
    opt.step(net(torch.ones(1, 3)).sum(), step=0)
    other = Optimizer("actor", net.parameters(), OptConfig())
    other.load_state_dict(opt.state_dict())
    assert other.adam.state_dict()["state"][0]["step"] == 1


def test_skipped_step_leaves_moments_and_step_count_after_a_good_step():
    net = _net()
    opt = Optimizer("model", net.parameters(), OptConfig(weight_decay=1e-2))
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
