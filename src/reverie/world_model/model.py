"""The world model (section 2.1, Eq. 2): encoder, RSSM, decoder, reward and discount heads.

Batch-major throughout: batches are ``[B, T, ...]`` as sampled from replay. Follows the
official TF2 code (danijar/dreamerv2, ``agent.py: WorldModel`` and ``common/nets.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from reverie.config import DecoderConfig, EncoderConfig, WorldModelConfig
from reverie.contracts import Batch, Observed
from reverie.errors import TaskError
from reverie.nn.distributions import Bernoulli, Normal
from reverie.nn.layers import (
    MLP,
    ConvDecoder,
    ConvEncoder,
    GridDecoder,
    GridEncoder,
    autocast,
    preprocess_image,
)
from reverie.spaces import action_dim, grid_shape
from reverie.world_model.kl import kl_loss
from reverie.world_model.rssm import RSSM, Draw, latent_dist

# ``env.reward_transform`` by name: what the reward head learns (and imagination predicts) of
# the raw reward. The agent picks one and hands the world model the function.
REWARD_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "identity": lambda r: r, "sign": torch.sign}


def _obs_shapes(obs_space: dict[str, gymnasium.spaces.Box]) -> dict[str, tuple[int, ...]]:
    shapes = {k: tuple(obs_space[k].shape) for k in ("image", "vector") if k in obs_space}
    if not shapes:
        raise TaskError(f"observation space needs an 'image' and/or a 'vector' key, got {sorted(obs_space)}")
    if "image" in shapes and len(shapes["image"]) != 3:
        raise TaskError(f"image observations must be [H, W, C], got shape {shapes['image']}")
    return shapes


def _check_unit_interval(space: gymnasium.spaces.Box) -> None:
    """A Bernoulli likelihood needs targets in [0, 1]."""
    if not (np.all(space.low >= 0) and np.all(space.high <= 1)):
        raise TaskError(f"world_model.decoder.vector_dist=bernoulli needs vector observations in [0, 1], this task's "
                        f"lie in [{np.min(space.low)}, {np.max(space.high)}]; use vector_dist=normal")


def describe_obs(obs_space: dict[str, gymnasium.spaces.Box]) -> str:
    """``vector[4]``, ``image[64, 64, 1]``, ``vector[400] (grid 10×10×4)``: for error messages."""
    parts = []
    for key in ("image", "vector"):
        if key in obs_space:
            grid = grid_shape(obs_space[key])
            parts.append(f"{key}{list(obs_space[key].shape)}" + (f" (grid {'×'.join(map(str, grid))})" if grid else ""))
    return " and ".join(parts) or "no image or vector"


def vector_grid(obs_space: dict[str, gymnasium.spaces.Box], config: WorldModelConfig,
                task: str) -> tuple[int, int, int] | None:
    """The ``(H, W, C)`` grid of the ``vector`` observation when ``world_model.encoder.kind`` or
    ``decoder.kind`` is ``grid`` (None when neither is); a ``TaskError`` naming the preset
    that fits when the task gives no grid (an image, a plain vector such as CartPole's)."""
    parts = [part for part in ("encoder", "decoder") if getattr(config, part).kind == "grid"]
    if not parts:
        return None
    grid = grid_shape(obs_space["vector"]) if "vector" in obs_space else None
    if grid is None:
        asked = " and ".join(f"world_model.{part}.kind=grid" for part in parts)
        raise TaskError(f"{asked} {'needs' if len(parts) == 1 else 'need'} a grid observation (MinAtar: --task "
                        f"minatar_<game> --preset minatar); {task} gives {describe_obs(obs_space)}; use kind=mlp")
    return grid


class ObsEncoder(nn.Module):
    """CNN for ``image`` (uint8 ``[B, T, H, W, C]``, converted here by ``preprocess_image``),
    MLP (``kind=mlp``) or grid convolutions (``kind=grid``, on ``grid = (H, W, C)``) for
    ``vector`` ``[B, T, D]``; ``embed [B, T, out_dim]`` = concat of both."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], config: EncoderConfig,
                 grid: tuple[int, int, int] | None = None):
        super().__init__()
        self.cnn = ConvEncoder(shapes["image"], config.depth, config.kernels) if "image" in shapes else None
        # One net for the vector; the MLP keeps its name (``mlp``) so saved runs load unchanged.
        self.mlp = self.grid = None
        if "vector" in shapes and config.kind == "mlp":
            self.mlp = MLP(shapes["vector"][0], 0, config.mlp_layers, config.mlp_units)
        elif "vector" in shapes:
            self.grid = GridEncoder(_grid(grid, "encoder"), config.grid_depth, config.grid_layers)
        self.out_dim = sum(net.out_dim for net in (self.cnn, self.mlp, self.grid) if net is not None)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.cnn is not None:
            image = preprocess_image(obs["image"])
            parts.append(self.cnn(image.flatten(0, -4)).unflatten(0, image.shape[:-3]))
        if self.mlp is not None:
            parts.append(self.mlp(obs["vector"]))
        if self.grid is not None:
            parts.append(self.grid(obs["vector"]))
        return torch.cat(parts, -1)


class ObsDecoder(nn.Module):
    """``feat [B, T, F]`` → ``{"image": Normal(mean [B, T, C, H, W], 1), "vector": Normal(mean [B, T, D], 1)}``
    for the keys present (``vector``: ``Bernoulli(logits [B, T, D])`` with ``vector_dist=bernoulli``),
    the vector's values from an MLP (``kind=mlp``) or grid convolutions (``kind=grid``; the same
    flat ``[B, T, D]``, so the same likelihood). Image targets are ``preprocess_image(image)``."""

    def __init__(self, feat_dim: int, shapes: dict[str, tuple[int, ...]], config: DecoderConfig,
                 grid: tuple[int, int, int] | None = None):
        super().__init__()
        self.vector_dist = config.vector_dist
        self.cnn = ConvDecoder(feat_dim, shapes["image"], config.depth, config.kernels) if "image" in shapes else None
        self.mlp = self.grid = None
        if "vector" in shapes and config.kind == "mlp":
            self.mlp = MLP(feat_dim, shapes["vector"][0], config.mlp_layers, config.mlp_units)
        elif "vector" in shapes:
            self.grid = GridDecoder(feat_dim, _grid(grid, "decoder"), config.grid_depth, config.grid_layers)

    def forward(self, feat: torch.Tensor) -> dict[str, Normal | Bernoulli]:
        dists = {}
        if self.cnn is not None:
            mean = self.cnn(feat.flatten(0, -2)).unflatten(0, feat.shape[:-1])
            dists["image"] = Normal(mean.float(), 1.0, event_dims=3)
        net = self.mlp if self.mlp is not None else self.grid
        if net is not None:
            out = net(feat).float()
            dists["vector"] = Bernoulli(out, event_dims=1) if self.vector_dist == "bernoulli" else Normal(out, 1.0, event_dims=1)
        return dists


def _grid(grid: tuple[int, int, int] | None, part: str) -> tuple[int, int, int]:
    if grid is None:
        raise TaskError(f"world_model.{part}.kind=grid needs the grid shape (H, W, C) of the vector observation "
                        "(a reverie.spaces.GridBox, as MinAtar's); use kind=mlp")
    return grid


class Head(nn.Module):
    """MLP ``feat [..., F]`` → scalar distribution ``[...]``: ``Normal(mean, 1)`` (reward) or
    ``Bernoulli(logits)`` (discount)."""

    def __init__(self, feat_dim: int, layers: int, units: int, dist: str):
        super().__init__()
        self.mlp = MLP(feat_dim, 1, layers, units)
        self.dist = dist

    def forward(self, feat: torch.Tensor) -> Normal | Bernoulli:
        out = self.mlp(feat).squeeze(-1).float()
        return Normal(out, 1.0) if self.dist == "normal" else Bernoulli(out)


class WorldModel(nn.Module):
    """Encoder, RSSM and heads, trained jointly on Eq. 2 with KL balancing.

    ``heads["decoder"|"reward"|"discount"]`` map features to distributions (``discount``
    only when ``config.heads.discount``; ``decoder`` returns a dict of ``Normal`` by key).

    ``config`` is the ``world_model`` section; the rest are plain values the agent takes from
    the other sections (``reverie.agent.build_world_model``): ``discount`` γ (the discount
    head's target γ·(1 − terminal)), ``reward_transform`` (the reward head's target of the raw
    reward), ``precision`` (``"fp32"`` or ``"bf16"`` autocast), ``device`` (the model lives
    there), ``task`` (named in errors only).
    """

    def __init__(self, config: WorldModelConfig, obs_space: dict[str, gymnasium.spaces.Box],
                 act_space: gymnasium.Space, *, discount: float,
                 reward_transform: Callable[[torch.Tensor], torch.Tensor], precision: str = "fp32",
                 device: torch.device | str = "cpu", task: str = "this task"):
        super().__init__()
        self.config = config
        self.discount = discount
        self.reward_transform = reward_transform
        self.precision = precision
        self.shapes = _obs_shapes(obs_space)
        if config.decoder.vector_dist == "bernoulli" and "vector" in obs_space:
            _check_unit_interval(obs_space["vector"])
        self.action_dim = action_dim(act_space)
        grid = vector_grid(obs_space, config, task)
        self.encoder = ObsEncoder(self.shapes, config.encoder, grid)
        self.rssm = RSSM(config.rssm, self.encoder.out_dim, self.action_dim)
        feat = self.rssm.feat_dim
        self.heads = nn.ModuleDict({"decoder": ObsDecoder(feat, self.shapes, config.decoder, grid)})
        self.heads["reward"] = Head(feat, config.heads.layers, config.heads.units, "normal")
        if config.heads.discount:
            self.heads["discount"] = Head(feat, config.heads.layers, config.heads.units, "bernoulli")
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.rssm.device

    def preprocess(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Numpy arrays or tensors ``[B, T, ...]`` → tensors on the model's device.

        ``image`` stays uint8 (the encoder converts it); ``vector``, ``action``, ``is_first``,
        ``is_last``, ``is_terminal`` become float32; ``reward`` is transformed by
        ``reward_transform``; ``discount`` = γ·(1 − is_terminal) is added. Works for
        acting too (observations ``[N, ...]`` without reward or is_terminal).
        """
        data = {}
        for key, value in batch.items():
            value = torch.as_tensor(value, device=self.device)
            data[key] = value if key == "image" else value.float()
        if "reward" in data:
            data["reward"] = self.reward_transform(data["reward"])
        if "is_terminal" in data:
            data["discount"] = self.discount * (1.0 - data["is_terminal"])
        return data

    def observe(self, batch: Batch, draw: Draw = "sample") -> Observed:
        """The forward pass on a batch ``[B, T, ...]``: preprocess, encode, and the posterior
        and prior over every sequence, each starting from the zero state (``draw="mode"``:
        the posterior path deterministic, for analysis; training samples)."""
        data = self.preprocess(batch)
        with self._autocast():
            embed = self.encoder(data)
            post, prior = self.rssm.observe(embed, data["action"], data["is_first"], draw=draw)
            feat = self.rssm.get_feat(post)
        return Observed(data, post, prior, feat)

    def loss(self, observed: Observed) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 2 on what ``observe`` returned: ``(model_loss, metrics)``, metrics detached
        0-dim tensors. ``model_loss = β·kl_loss + Σ_k scale_k·(−mean log p_k)``."""
        cfg = self.config
        data, post, prior, feat = observed
        with self._autocast():
            losses = {f"{name}_loss": -like.mean() for name, like in self._log_likelihoods(feat, data).items()}
        kl, kl_value = kl_loss(post, prior, balance=cfg.kl.balance, free=cfg.kl.free, free_avg=cfg.kl.free_avg)
        scales = {f"{k}_loss": getattr(cfg.loss_scales, k) for k in ("image", "reward", "discount")}
        model_loss = cfg.kl.scale * kl + sum(scales[k] * v for k, v in losses.items())
        metrics = {"model_loss": model_loss, **losses, "kl_loss": kl, "model_kl": kl_value}
        with torch.no_grad():  # metrics only: no graph
            metrics["prior_ent"] = latent_dist(prior).entropy().mean()
            metrics["post_ent"] = latent_dist(post).entropy().mean()
        return model_loss, {k: v.detach() for k, v in metrics.items()}

    def _log_likelihoods(self, feat: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-step log-likelihood ``[B, T]`` of each head; heads not in ``grad_heads`` see
        stop_grad(feat). The ``image`` term sums the image and vector decoders."""
        grad_heads = self.config.grad_heads
        likes = {}
        for name, head in self.heads.items():
            key = "image" if name == "decoder" else name
            dist = head(feat if key in grad_heads else feat.detach())
            if name == "decoder":
                targets = {"image": preprocess_image(data["image"])} if "image" in dist else {}
                targets.update({"vector": data["vector"]} if "vector" in dist else {})
                likes[key] = sum(dist[k].log_prob(targets[k]) for k in dist)
            else:
                likes[key] = dist.log_prob(data[name])
        return likes

    def compile_steps(self) -> None:
        """``torch.compile`` the observe loop whole (``RSSM.compile_loop``), the prior step
        and the heads (the agent calls it under the top-level ``compile`` setting): fuses the
        elementwise work around each matmul. One graph per batch size."""
        self.rssm.compile_loop()
        self.rssm.img_step = torch.compile(self.rssm.img_step, dynamic=False)
        for head in self.heads.values():
            head.compile(dynamic=False)

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self.precision)

    @torch.no_grad()
    def openl_video(self, batch: dict[str, Any], n: int = 4, context: int = 5) -> np.ndarray:
        """Open-loop prediction video, uint8 ``[T, 3·H, n·W, C]``.

        ``context`` frames are reconstructed from the posterior, the rest imagined from the
        last posterior state with the true actions. Rows: truth, model, error; columns: the
        first ``n`` sequences of the batch.
        """
        if "image" not in self.shapes:
            raise ValueError("openl_video needs image observations; this world model has none")
        data = {k: v[:n] for k, v in self.preprocess(batch).items()}
        decoder = self.heads["decoder"]
        with self._autocast():
            post, _ = self.rssm.observe(self.encoder(data)[:, :context], data["action"][:, :context],
                                        data["is_first"][:, :context])
            recon = decoder(self.rssm.get_feat(post))["image"].mode()
            start = {k: v[:, -1] for k, v in post.items()}
            prior = self.rssm.imagine(data["action"][:, context:], start)
            openl = decoder(self.rssm.get_feat(prior))["image"].mode()
        model = (torch.cat([recon, openl], 1).float() + 0.5).clamp(0, 1)
        truth = preprocess_image(data["image"]) + 0.5
        error = (model - truth + 1) / 2
        video = torch.cat([truth, model, error], -2)  # [n, T, C, 3H, W]
        video = video.permute(1, 3, 0, 4, 2).flatten(2, 3)  # [T, 3H, n·W, C]
        return (video * 255).round().to(torch.uint8).cpu().numpy()

