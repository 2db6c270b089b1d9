"""KL balancing (section 2.1, Algorithm 2) with free nats, as in the official code.

``post`` and ``prior`` are RSSM states ``[B, T, ...]`` (dicts with ``"logits"`` or
``"mean"``/``"std"``; other keys are ignored) or bare logits ``[..., stoch, classes]``.
"""

from __future__ import annotations

import torch

from reverie.world_model.rssm import State, latent_dist


def kl_loss(
    post: State | torch.Tensor, prior: State | torch.Tensor, *, balance: float, free: float, free_avg: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(loss, value)``, both 0-dim.

    ``value`` = mean over the batch of KL(post ‖ prior) summed over latents.
    With ``balance`` = α ≠ 0.5 (Algorithm 2), the prior learns α times and the posterior
    1 − α times the KL gradient::

        loss = α · max(mean KL(sg(post) ‖ prior), free) + (1 − α) · max(mean KL(post ‖ sg(prior)), free)

    ``free_avg=False`` takes the max per element, before the mean. ``balance == 0.5`` is
    the "No KL Balancing" ablation and, as in the official code (``common/nets.py``,
    ``kl_loss``), the plain KL clamped per element whatever ``free_avg`` says:
    ``loss = mean(max(KL(post ‖ prior), free))`` with the full gradient to both sides
    (twice the α = 0.5 gradient of the formula above; Adam makes the scale immaterial).
    Below ``free`` nats the loss is the constant ``free`` and sends no gradient.
    """
    post, prior = latent_dist(_params(post)), latent_dist(_params(prior))
    if balance == 0.5:
        value = post.kl(prior)
        return value.clamp_min(free).mean(), value.mean()
    # Each side's log-softmax is computed once; the stop-gradient side is its detached copy.
    value = post.kl(prior.detach())  # trains the posterior (representation)
    value_prior = post.detach().kl(prior)  # trains the prior (transition)
    loss = balance * _free_nats(value_prior, free, free_avg) + (1 - balance) * _free_nats(value, free, free_avg)
    return loss, value.mean()


def _free_nats(kl: torch.Tensor, free: float, free_avg: bool) -> torch.Tensor:
    return kl.mean().clamp_min(free) if free_avg else kl.clamp_min(free).mean()


def _params(x: State | torch.Tensor) -> State:
    if isinstance(x, torch.Tensor):
        return {"logits": x}
    return {k: x[k] for k in ("logits", "mean", "std") if k in x}
