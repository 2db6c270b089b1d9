"""RSSM: shapes, the is_first reset, the Gaussian variant and the LN-GRU."""

import pytest
import torch

from reverie.config import RSSMConfig
from reverie.nn.layers import GRUCell
from reverie.world_model.rssm import RSSM, latent_dist

B, T, E, A = 3, 6, 10, 4


def _rssm(classes=4, **kwargs):
    torch.manual_seed(0)
    return RSSM(RSSMConfig(deter=16, hidden=12, stoch=5, classes=classes, **kwargs), embed_dim=E, action_dim=A)


def _inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(B, T, E, generator=gen), torch.randn(B, T, A, generator=gen)


@pytest.mark.parametrize("classes", [4, 0])
def test_observe_and_imagine_shapes(classes):
    rssm = _rssm(classes)
    embed, action = _inputs()
    post, prior = rssm.observe(embed, action, torch.zeros(B, T))
    stoch = (5, 4) if classes else (5,)
    stats = {"logits"} if classes else {"mean", "std"}
    assert set(post) == {"deter", "stoch"} | stats
    assert set(prior) == {"deter"} | stats  # the prior enters only the KL: no sample drawn
    assert post["deter"].shape == prior["deter"].shape == (B, T, 16) and post["stoch"].shape == (B, T, *stoch)
    assert rssm.get_feat(post).shape == (B, T, rssm.feat_dim)
    assert rssm.feat_dim == 16 + (20 if classes else 5)
    assert latent_dist(post).entropy().shape == (B, T)
    imagined = rssm.imagine(action, {k: v[:, -1] for k, v in post.items()})
    assert imagined["deter"].shape == (B, T, 16)
    assert torch.equal(post["deter"], prior["deter"])  # the posterior shares h_t with the prior


def test_categorical_stoch_is_one_hot_and_gaussian_std_bounded():
    embed, action = _inputs()
    post, _ = _rssm(4).observe(embed, action, torch.zeros(B, T))
    assert torch.equal(post["stoch"].sum(-1), torch.ones(B, T, 5))
    post, _ = _rssm(0, min_std=0.1).observe(embed, action, torch.zeros(B, T))
    assert (post["std"] > 0.1).all() and (post["std"] < 2.1).all()


def test_initial_state_is_zero():
    state = _rssm().initial(2)
    assert all((v == 0).all() and v.shape[0] == 2 for v in state.values())


@pytest.mark.parametrize("classes", [4, 0])
def test_is_first_inside_a_sequence_equals_a_fresh_start(classes):
    rssm = _rssm(classes)
    embed, action = _inputs()
    is_first = torch.zeros(B, T)
    is_first[:, 0] = 1
    is_first[1, 3] = 1  # batch element 1 starts a new episode at t = 3
    post, _ = rssm.observe(embed, action, is_first)
    fresh_first = torch.zeros(B, T - 3)
    fresh_first[:, 0] = 1
    # h_3 of element 1 must not depend on the state or action carried in: start the fresh
    # run from a random state with random actions.
    junk = {k: torch.randn_like(v[:, 2]) for k, v in post.items()}
    fresh, _ = rssm.observe(embed[:, 3:], torch.randn_like(action[:, 3:]), fresh_first, junk)
    torch.testing.assert_close(post["deter"][1, 3], fresh["deter"][1, 0])
    initial = rssm.initial(B)
    expected = rssm.img_step(initial, torch.zeros(B, A))["deter"][1]
    torch.testing.assert_close(post["deter"][1, 3], expected)
    # Element 0 does not reset at t = 3, so its h_3 differs from a fresh start.
    assert not torch.allclose(post["deter"][0, 3], fresh["deter"][0, 0])


def test_is_first_sequence_matches_fresh_run_when_deterministic():
    # With draw="mode" the whole posterior path is deterministic: a sequence that resets at
    # t = 3 continues exactly like a fresh start from t = 3.
    rssm = _rssm()
    embed, action = _inputs()
    is_first = torch.zeros(B, T)
    is_first[:, 0] = is_first[:, 3] = 1

    def run(embed, action, is_first, state):
        steps = []
        for t in range(embed.shape[1]):
            post, _ = rssm.observe(embed[:, t:t + 1], action[:, t:t + 1], is_first[:, t:t + 1], state, draw="mode")
            state = {k: v[:, 0] for k, v in post.items()}
            steps.append(state["deter"])
        return torch.stack(steps, 1)

    full = run(embed, action, is_first, rssm.initial(B))
    fresh = run(embed[:, 3:], action[:, 3:], is_first[:, 3:], rssm.initial(B))
    torch.testing.assert_close(full[:, 3:], fresh)


@pytest.mark.parametrize("classes", [4, 0])
def test_skipped_resets_give_the_same_values_and_gradients(classes, monkeypatch):
    # On the CPU, steps where no sequence starts an episode skip the reset multiplications;
    # forcing a mask of ones at every step must give bitwise the same posterior, and the
    # same gradients up to the order in which autograd sums them.
    from reverie.world_model import rssm as rssm_module

    is_first = torch.zeros(B, T)
    is_first[:, 0] = is_first[1, 3] = 1
    masks = rssm_module._keep_masks(is_first)
    assert [m is None for m in masks] == [False, True, True, False, True, True]

    def run():
        rssm = _rssm(classes)
        embed, action = _inputs()
        embed.requires_grad_()
        torch.manual_seed(2)
        post, prior = rssm.observe(embed, action, is_first)
        feat = rssm.get_feat(post)
        (feat.square().sum() + latent_dist(prior).entropy().sum()).backward()
        return feat.detach(), embed.grad, [p.grad for p in rssm.parameters()]

    skipped = run()
    keep_masks = rssm_module._keep_masks  # every step masked, as a compiled loop (or a GPU) runs it
    assert all(m is not None for m in keep_masks(is_first, every_step=True))
    monkeypatch.setattr(rssm_module, "_keep_masks", lambda first, every_step=False: keep_masks(first, True))
    always = run()
    torch.testing.assert_close(skipped[0], always[0], rtol=0, atol=0)
    torch.testing.assert_close(skipped[1], always[1])
    for a, b in zip(skipped[2], always[2], strict=True):
        torch.testing.assert_close(a, b)


def test_gru_layer_norm_and_update_bias():
    torch.manual_seed(0)
    cell = GRUCell(3, 4, layer_norm=True)
    assert isinstance(cell.norm, torch.nn.LayerNorm)
    assert isinstance(GRUCell(3, 4, layer_norm=False).norm, torch.nn.Identity)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    parts = cell.norm(cell.linear(torch.cat([x, h], -1)))
    reset, cand, update = parts.split(4, -1)
    update = torch.sigmoid(update - 1)
    expected = update * torch.tanh(torch.sigmoid(reset) * cand) + (1 - update) * h
    torch.testing.assert_close(cell(x, h), expected)


def test_layer_norm_ablation_parameter_difference():
    with_ln = sum(p.numel() for p in _rssm(layer_norm=True).parameters())
    without = sum(p.numel() for p in _rssm(layer_norm=False).parameters())
    assert with_ln - without == 2 * 3 * 16  # LayerNorm gain and bias over the 3 gates


def test_state_dict_saved_under_the_official_layer_names_still_loads():
    # Before the rename to the paper's words, checkpoints held img_in / img_out / obs_out.
    from reverie.world_model.rssm import OFFICIAL_NAMES

    torch.manual_seed(0)
    saved = _rssm().state_dict()
    old = {}
    for key, value in saved.items():
        head, _, rest = key.partition(".")
        old[f"{OFFICIAL_NAMES.get(head, head)}.{rest}"] = value
    assert any(key.startswith("img_out.") for key in old) and not any(k.startswith("prior_head.") for k in old)
    torch.manual_seed(1)
    fresh = _rssm()
    fresh.load_state_dict(old)  # strict: every key must be matched
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, saved[key]), key
