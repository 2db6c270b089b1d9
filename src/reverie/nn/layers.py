"""Layers shared by the world model and the actor-critic: MLP, LN-GRU, conv encoder/decoder,
grid encoder/decoder.

Shapes: MLPs take any leading dims ``[..., D]``; convolutional layers take ``[N, C, H, W]``;
the grid nets take and give flat grids ``[..., H·W·C]`` (row-major, channels last).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reverie.errors import ConfigError

# Keras ``LayerNormalization``'s default epsilon, which every LayerNorm of the official code
# uses (the GRU's and the ``norm: layer`` option of its MLPs); torch's default is 1e-5. The
# GRU normalises 3·deter pre-activations whose variance is O(1), so the choice shifts h' by
# ~1e-3 relative (measured by the parity suite, tests/parity).
LAYER_NORM_EPS = 1e-3


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The mixed-precision context of ``precision`` (``"bf16"``: matmuls and convolutions in
    bfloat16 with fp32 accumulation; anything else: fp32, autocast off) on ``device``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def official_init(module: nn.Module) -> None:
    """Keras defaults of the official TF2 code: Glorot-uniform weights, zero biases.

    Use as ``self.apply(official_init)`` at the end of a constructor; every layer class
    here does so, and modules built from raw ``nn.Linear`` (the RSSM) call it themselves.
    """
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MLP(nn.Module):
    """``layers`` hidden Linear+ELU layers of ``units``, then a linear output of ``out_dim``.

    As in the official code, hidden layers use ELU and optional LayerNorm (``norm``);
    ``out_dim=0`` returns the last hidden activations.
    """

    def __init__(self, in_dim: int, out_dim: int, layers: int, units: int, norm: bool = False):
        super().__init__()
        blocks: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers):
            blocks.append(nn.Linear(dim, units))
            if norm:
                blocks.append(nn.LayerNorm(units, eps=LAYER_NORM_EPS))
            blocks.append(nn.ELU())
            dim = units
        if out_dim:
            blocks.append(nn.Linear(dim, out_dim))
            dim = out_dim
        self.net = nn.Sequential(*blocks)
        self.out_dim = dim
        self.apply(official_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def preprocess_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, C]`` → float ``[..., C, H, W]`` in [−0.5, 0.5].

    The only image conversion in Reverie: world-model training and acting both call it.
    """
    return image.movedim(-1, -3).float() / 255.0 - 0.5


class GRUCell(nn.Module):
    """The official DreamerV2 GRU: one Linear over [input, h] → 3 gates, optional LayerNorm.

    ``reset, cand, update = split(LN(W·[x, h] + b))``; ``cand = tanh(σ(reset)·cand)``;
    ``update = σ(update − 1)`` (bias −1 keeps h early in training);
    ``h' = update·cand + (1 − update)·h``. ``layer_norm=False`` is the Table 2 ablation.
    Shapes: ``x`` ``[N, in_dim]``, ``h`` ``[N, size]`` → ``[N, size]``.
    """

    def __init__(self, in_dim: int, size: int, layer_norm: bool = True, update_bias: float = -1.0):
        super().__init__()
        self.size = size
        self.update_bias = update_bias
        self.linear = nn.Linear(in_dim + size, 3 * size)
        self.norm = nn.LayerNorm(3 * size, eps=LAYER_NORM_EPS) if layer_norm else nn.Identity()
        self.apply(official_init)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))
        reset, cand, update = parts.split(self.size, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        # update·cand + (1 − update)·h in one op (in h's dtype: fp32 under bf16 autocast)
        return torch.lerp(h, cand.to(h.dtype), update.to(h.dtype))


def conv_out_sizes(size: int, kernels: list[int]) -> list[int]:
    """Spatial sizes after each stride-2 unpadded convolution, starting at ``size``."""
    sizes = [size]
    for k in kernels:
        sizes.append((sizes[-1] - k) // 2 + 1)
    return sizes


def deconv_out_size(kernels: list[int]) -> int:
    """Spatial size reached by stride-2 unpadded transposed convolutions from 1×1."""
    size = 1
    for k in kernels:
        size = (size - 1) * 2 + k
    return size


def conv2d_patches(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` (unpadded, square kernel and stride) on NHWC ``x [N, H, W, C]`` → ``[N, Ho, Wo, out]``,
    as one matrix product of the image patches with the flattened kernel (im2col)."""
    k, stride = conv.kernel_size[0], conv.stride[0]
    # [N, Ho, Wo, k, k, C]: channels innermost, so gathering the patches copies whole pixels.
    patches = x.unfold(1, k, stride).unfold(2, k, stride).permute(0, 1, 2, 4, 5, 3)
    # [out, k, k, C]: a view when the weight is stored channels-last (as ConvEncoder keeps it).
    weight = conv.weight.permute(0, 2, 3, 1).flatten(1)
    return F.linear(patches.flatten(3), weight, conv.bias)


def conv_transpose2d_phases(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    """``layer`` (stride 2, unpadded) on ``x [N, C, H, W]`` as one stride-1 convolution with
    4× the output channels followed by a pixel shuffle (sub-pixel decomposition).

    Output pixel ``(2i + r, 2j + s)`` only sees the kernel taps of parity ``(r, s)``, so each
    of the four output phases is an ordinary convolution with a ``k/2 × k/2`` (flipped)
    kernel. Odd kernels are padded with a zero tap, which adds exact zeros. Same values as
    the transposed convolution up to float rounding.
    """
    weight = layer.weight  # [in, out, k, k]
    c_in, c_out, k, _ = weight.shape
    if k % 2:
        weight = F.pad(weight, (0, 1, 0, 1))
    m = (k + k % 2) // 2
    # weight[ci, co, 2a + r, 2b + s] → kernel[(co, r, s), ci, m − 1 − a, m − 1 − b]
    kernel = weight.view(c_in, c_out, m, 2, m, 2).flip(2, 4).permute(1, 3, 5, 0, 2, 4).reshape(4 * c_out, c_in, m, m)
    bias = layer.bias.repeat_interleave(4) if layer.bias is not None else None
    y = F.pixel_shuffle(F.conv2d(x, kernel, bias, padding=m - 1), 2)
    return y[..., : (x.shape[-2] - 1) * 2 + k, : (x.shape[-1] - 1) * 2 + k]


GRID_SIDE_MAX = 16  # inputs up to this side are grids rather than frames, for cnn_size_hint


def cnn_size_hint(height: int, width: int) -> str:
    """The end of the CNN's size errors: the presets whose frames it takes (64×64), and for a
    grid-sized input (MinAtar's 10×10) the grid nets, which take grids as flat vectors."""
    hint = " (the paper's CNN, as in --preset atari or dmc)"
    if max(height, width) <= GRID_SIDE_MAX:
        hint += ("; a grid of cells such as MinAtar's 10×10 takes the grid nets: --task minatar_<game> "
                 "--preset minatar --set world_model.encoder.kind=grid")
    return hint


class ConvEncoder(nn.Module):
    """CNN of stride-2 convs, channels ``depth·(1, 2, 4, 8, …)``, ELU, flattened.

    64×64 with kernels 4,4,4,4: 64→31→14→6→2, ``out_dim = 2·2·8·depth``.
    Shapes: float ``[N, C, H, W]`` (from ``preprocess_image``) → ``[N, out_dim]``.
    ``channels_last`` runs the convolutions in NHWC memory layout (same values, same
    parameters): oneDNN's NHWC kernels are ~2× faster on CPU, cuDNN's under bf16/TF32.
    """

    def __init__(self, shape: tuple[int, int, int], depth: int, kernels: list[int], channels_last: bool = True):
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        height, width, channels = shape
        sizes = [conv_out_sizes(s, kernels)[-1] for s in (height, width)]
        if min(sizes) < 1:
            raise ConfigError(f"image {height}×{width} (env.size) is too small for the encoder kernels {kernels} "
                              "(world_model.encoder.kernels); use env.size=[64, 64]"
                              f"{cnn_size_hint(height, width)}")
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers += [nn.Conv2d(channels, depth * 2**i, k, stride=2), nn.ELU()]
            channels = depth * 2**i
        self.net = nn.Sequential(*layers)
        self.out_dim = channels * sizes[0] * sizes[1]
        self.apply(official_init)
        if channels_last:  # the kernels' layout too, so neither path reorders weights per call
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):
                    layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= self.SMALL_BATCH:
            return self._forward_patches(x)
        # Flattened in NHWC order (as the official TF code): a view of the channels-last
        # result, whose gradient arrives channels-last too. An NCHW flatten would send an
        # NCHW gradient into the channels-last backward, which then converts every layer.
        return self.net(self._input_layout(x)).permute(0, 2, 3, 1).flatten(1)

    def _input_layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format != torch.channels_last:
            return x.contiguous()
        # NHWC memory, stated through the strides. ``contiguous(memory_format=channels_last)``
        # is not enough: a 1-channel image is already "contiguous" in both layouts, so it is
        # returned as is, convolved in NCHW and then converted at every layer, in the
        # forward and the backward pass (2 s of a 16 s atari update).
        n, c, h, w = x.shape
        return x.permute(0, 2, 3, 1).contiguous().as_strided((n, c, h, w), (h * w * c, 1, w * c, c))

    # Up to this many images (acting: one per environment) the convolutions run as patch
    # matrix products in NHWC: oneDNN's per-call set-up dominates at batch 1, and the last
    # conv (2×2 output) is a weight-bound matrix-vector product (2.3 → 1.2 ms for the atari
    # encoder at batch 1, one thread). Same parameters, same values up to float rounding.
    SMALL_BATCH = 8

    def _forward_patches(self, x: torch.Tensor) -> torch.Tensor:
        h = x.permute(0, 2, 3, 1)  # NHWC
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                h = conv2d_patches(h, layer)
            elif isinstance(layer, nn.ELU):
                h = layer(h)
        return h.flatten(1)


class ConvDecoder(nn.Module):
    """Linear to ``32·depth``, then stride-2 transposed convs to the image (official code).

    Channels ``depth·(…, 4, 2, 1)`` then ``C``, ELU between, none at the end. Kernels
    5,5,6,6 give 1→5→13→30→64, so only images whose side equals ``deconv_out_size(kernels)``
    (64 for the default kernels) are supported.
    Shapes: ``[N, in_dim]`` → mean image ``[N, C, H, W]``.

    The first transposed conv sees a 1×1 input, so it is a matrix product: it runs as one
    (same parameters, ~10× faster than the conv kernel on CPU). ``channels_last`` as in
    ``ConvEncoder``.
    """

    def __init__(self, in_dim: int, shape: tuple[int, int, int], depth: int, kernels: list[int], channels_last: bool = True):
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        height, width, channels = shape
        side = deconv_out_size(kernels)
        if (height, width) != (side, side):
            raise ConfigError(
                f"the image decoder with kernels {kernels} produces {side}×{side} images, "
                f"got {height}×{width}; set env.size=[{side}, {side}]"
                f"{cnn_size_hint(height, width)}"
            )
        self.linear = nn.Linear(in_dim, 32 * depth)
        layers: list[nn.Module] = []
        in_ch = 32 * depth
        for i, k in enumerate(kernels):
            last = i == len(kernels) - 1
            out_ch = channels if last else depth * 2 ** (len(kernels) - i - 2)
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, k, stride=2))
            if not last:
                layers.append(nn.ELU())
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.apply(official_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.net[0]  # ConvTranspose2d weight [in, out, k, k] on a 1×1 input
        out, k = first.out_channels, first.kernel_size[0]
        x = F.linear(self.linear(x), first.weight.flatten(1).T, first.bias.repeat_interleave(k * k))
        x = x.unflatten(-1, (out, k, k)).contiguous(memory_format=self.memory_format)
        # The sub-pixel path pays in fp32 only: under bf16 autocast oneDNN's transposed kernel
        # is the faster one for the image layer (N = 1,000: 202 vs 339 ms forward + backward).
        phases = not torch.is_autocast_enabled(x.device.type)
        for layer in self.net[1:]:
            narrow = isinstance(layer, nn.ConvTranspose2d) and layer.out_channels <= self.PHASES_MAX_CHANNELS
            x = conv_transpose2d_phases(x, layer) if narrow and phases else layer(x)
        return x

    # Transposed convs with this few output channels (the image layer) run as sub-pixel
    # convolutions in fp32: oneDNN's fp32 transposed kernels are slow for them (atari image
    # layer at N = 250: 75 → 49 ms forward + backward; debug 4-channel layer 2.2 → 1.9 ms).
    PHASES_MAX_CHANNELS = 4


def grid_convs(channels: list[int], last_activation: bool) -> nn.Sequential:
    """3×3 convolutions, stride 1, padding 1 (the grid keeps its size), ``channels[i] →
    channels[i + 1]``, ELU after each (after the last one too if ``last_activation``)."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
        if last_activation or i < len(channels) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class GridEncoder(nn.Module):
    """``layers`` 3×3 convs of ``depth`` channels over a grid of cells, ELU after each, flattened.

    The weights are shared by every cell and the zero padding reads as empty cells, so the
    conv stack is translation equivariant: the same object in another cell gives the same
    features in that cell. Input: the flat grid ``[..., H·W·C]`` (``shape = (H, W, C)``, as
    ``reverie.spaces.GridBox`` gives it); output ``[..., out_dim]``, ``out_dim = H·W·depth``
    (channels last).
    """

    def __init__(self, shape: tuple[int, int, int], depth: int, layers: int):
        super().__init__()
        self.shape = tuple(shape)
        height, width, channels = self.shape
        self.net = grid_convs([channels] + [depth] * layers, last_activation=True)
        self.out_dim = height * width * depth
        self.apply(official_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        grid = x.reshape(-1, *self.shape).permute(0, 3, 1, 2)  # [N, C, H, W]
        return self.net(grid).permute(0, 2, 3, 1).reshape(*lead, self.out_dim)


class GridDecoder(nn.Module):
    """Linear to a ``[H, W, depth]`` grid, ELU, then ``layers`` 3×3 convs (ELU between, none at
    the end), the last to the ``C`` channels of each cell. Input ``[..., in_dim]``; output the
    flat grid ``[..., H·W·C]``, ordered as the observation (row-major, channels last), so the
    MLP decoder's likelihood applies to it unchanged.
    """

    def __init__(self, in_dim: int, shape: tuple[int, int, int], depth: int, layers: int):
        super().__init__()
        self.shape = tuple(shape)
        height, width, channels = self.shape
        self.depth = depth
        self.linear = nn.Linear(in_dim, height * width * depth)
        self.net = grid_convs([depth] * layers + [channels], last_activation=False)
        self.out_dim = height * width * channels
        self.apply(official_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        height, width, _ = self.shape
        grid = F.elu(self.linear(x.reshape(-1, x.shape[-1]))).unflatten(-1, (height, width, self.depth))
        return self.net(grid.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(*lead, self.out_dim)
