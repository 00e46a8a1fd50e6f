"""The noise-prediction network eps_theta(x_t, t, y): a small U-Net for 28x28 images.

Ho et al. (NeurIPS 2020), Sec. 4 and App. B: "a U-Net backbone similar to an unmasked
PixelCNN++ ... with group normalization throughout", parameters shared across time, which is
given to the network by the Transformer's sinusoidal position embedding, and self-attention at
the 16x16 resolution (of 32x32 images). The pieces here are theirs, scaled down for 28x28 grey
images on a CPU:

* resolutions 28 -> 14 -> 7 (``channel_mults``, default (1, 2, 2) times ``base_channels``);
* ``num_res_blocks`` Wide-ResNet-style residual blocks per resolution on the way down and one
  more on the way up (each up block concatenates the matching down activation: the U-Net's skip
  connections), group norm + SiLU before each 3x3 convolution, the time embedding added between
  the two convolutions;
* single-head self-attention (with a residual connection) at the resolutions in
  ``attention_resolutions`` (default: 7x7 only) and in the middle block;
* strided 3x3 convolutions down, nearest-neighbour upsampling + 3x3 convolution up;
* the last convolution of every residual branch and of the output initialised to zero, as in the
  authors' code, so that every block starts as the identity.

For classifier-free guidance (Ho & Salimans 2022, Sec. 3.2) the network is also conditioned on
the class y: a learned embedding of y, with one extra index ``num_classes`` for the null label
(no class), is added to the time embedding. ``num_classes = 0`` gives an unconditional network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The Transformer's sinusoidal position embedding of the time step t (Ho et al. Sec. 4 and
    App. B; Vaswani et al. 2017, Sec. 3.5): [sin(t w_k), cos(t w_k)], w_k = 10000^(-k/(d/2-1))."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    )
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))); h += Linear(SiLU(emb)); h = conv(SiLU(GN(h))); x' + h (Ho et al.
    App. B: Wide ResNet blocks; their dropout is left out for these short runs)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H x W positions, with a residual connection."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t, y) for [B, C, H, W] images x_t, integer time steps t [B] and class
    labels y [B] (``num_classes`` = the null label; ignored when ``num_classes = 0``)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (7,),
        num_classes: int = 10,
        groups: int = 8,
    ):
        super().__init__()
        ch = base_channels
        emb_dim = 4 * ch
        self.base_channels, self.num_classes = ch, num_classes
        self.time_mlp = nn.Sequential(
            nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        # y in 0..num_classes-1, and num_classes for the null label (Ho & Salimans Sec. 3.2)
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.head = nn.Conv2d(in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips, res = [ch], image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(ch, base_channels * mult, emb_dim, groups)])
                ch = base_channels * mult
                if res in attention_resolutions:
                    block.append(SelfAttention(ch, groups))
                self.down.append(block)
                skips.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res = (res + 1) // 2

        self.middle = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, groups),
                SelfAttention(ch, groups),
                ResBlock(ch, ch, emb_dim, groups),
            ]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                c_skip = skips.pop()
                block = nn.ModuleList(
                    [ResBlock(ch + c_skip, base_channels * mult, emb_dim, groups)]
                )
                ch = base_channels * mult
                if res in attention_resolutions:
                    block.append(SelfAttention(ch, groups))
                self.up.append(block)
            if level > 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1)])
                )
                res *= 2
        self.out = nn.Sequential(
            nn.GroupNorm(groups, ch), nn.SiLU(), _zero(nn.Conv2d(ch, in_channels, 3, padding=1))
        )

    def embedding(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The time embedding (sinusoidal, then an MLP) plus the class embedding of y."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.base_channels))
        if self.class_emb is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes)  # the null label: unconditional
            emb = emb + self.class_emb(y)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        emb = self.embedding(t, y)
        h = self.head(x)
        hs = [h]
        for block in self.down:
            if isinstance(block[0], ResBlock):
                h = block[0](h, emb)
                for layer in block[1:]:
                    h = layer(h)
            else:  # downsampling
                h = block[0](h)
            hs.append(h)
        h = self.middle[2](self.middle[1](self.middle[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block[0], ResBlock):
                skip = hs.pop()
                if skip.shape[-1] != h.shape[-1]:  # odd sizes: crop the upsampled map
                    h = h[..., : skip.shape[-2], : skip.shape[-1]]
                h = block[0](torch.cat([h, skip], dim=1), emb)
                for layer in block[1:]:
                    h = layer(h)
            else:  # upsampling
                h = block[1](block[0](h))
        return self.out(h)
