"""The noise conditional score network s_theta(x~, sigma_i): a small U-Net for 28x28 images.

The paper's network (Song & Ermon 2019, Sec. 4.2 and App. B.1) is a RefineNet (Lin et al., CVPR
2017): a U-Net-like encoder-decoder whose residual encoder uses dilated convolutions and whose
decoder fuses the resolutions with RefineNet blocks (residual conv units, multi-resolution fusion,
chained residual pooling), with ELU activations and *conditional instance normalization++*
(CondInstanceNorm++): an instance norm whose scale and shift gamma_i, beta_i (and a correction
for the channel means, alpha_i) are looked up by the index i of the noise level. It has no
attention. The network here keeps the two ideas that matter for a score network and is far
smaller for a CPU budget:

* a U-Net (Ronneberger et al. 2015) at 28 -> 14 -> 7 pixels with skip connections by
  concatenation, residual blocks of two 3x3 convolutions, strided convolutions down and
  nearest-neighbour upsampling + convolution up, instead of RefineNet's dilated residual encoder
  and RefineNet fusion blocks;
* conditioning on the noise level exactly as the paper does it, by normalisation layers whose
  affine parameters are looked up by i: here a *conditional group norm* (GroupNorm without its
  own affine parameters, followed by gamma_i, beta_i from an embedding table), a cousin of
  CondInstanceNorm++ (group norm instead of instance norm, and no alpha_i mean correction);
* ELU activations, as in the paper.

The output is divided by sigma_i, s_theta(x~, sigma_i) = f_theta(x~, i) / sigma_i: the
parameterisation of Song & Ermon (NeurIPS 2020, "Improved techniques", technique 3), not of the
2019 paper. It makes the network predict a quantity of order 1 at every level (the target of
Eq. 6, sigma_i s, is minus the unit-variance noise), which matters for a short training budget;
the model class is unchanged since 1/sigma_i could be learned by gamma_i.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalGroupNorm(nn.Module):
    """GN(h) * gamma_i + beta_i with gamma_i, beta_i looked up by the noise level index i (cf. the
    paper's CondInstanceNorm++, App. A): one embedding row per noise level."""

    def __init__(self, channels: int, num_levels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.embed = nn.Embedding(num_levels, 2 * channels)
        nn.init.ones_(self.embed.weight[:, :channels])
        nn.init.zeros_(self.embed.weight[:, channels:])

    def forward(self, h: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.embed(i)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(h) + beta


class ResBlock(nn.Module):
    """x + conv(ELU(CGN(conv(ELU(CGN(x)))))), with a 1x1 convolution on the skip path when the
    number of channels changes."""

    def __init__(self, c_in: int, c_out: int, num_levels: int, groups: int):
        super().__init__()
        self.norm1 = ConditionalGroupNorm(c_in, num_levels, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = ConditionalGroupNorm(c_out, num_levels, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.elu(self.norm1(x, i)))
        h = self.conv2(F.elu(self.norm2(h, i)))
        return self.skip(x) + h


class ScoreUNet(nn.Module):
    """f_theta(x~, i) for images [B, C, 28, 28] and noise level indices i [B] (0 = sigma_1, the
    largest); the score is f_theta / sigma_i (see the module docstring)."""

    def __init__(
        self,
        num_levels: int,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 64),
        groups: int = 8,
    ):
        super().__init__()
        c = list(channels)
        self.head = nn.Conv2d(in_channels, c[0], 3, padding=1)
        self.down = nn.ModuleList()  # one residual block per resolution
        self.downsample = nn.ModuleList()
        prev = c[0]
        for level, ch in enumerate(c):
            self.down.append(ResBlock(prev, ch, num_levels, groups))
            prev = ch
            if level < len(c) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.middle = ResBlock(prev, prev, num_levels, groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(c))):
            self.up.append(ResBlock(prev + c[level], c[level], num_levels, groups))
            prev = c[level]
            if level > 0:
                self.upsample.append(nn.Conv2d(prev, prev, 3, padding=1))
        self.out_norm = ConditionalGroupNorm(prev, num_levels, groups)
        self.out = nn.Conv2d(prev, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        skips = []
        for k, block in enumerate(self.down):
            h = block(h, i)
            skips.append(h)
            if k < len(self.downsample):
                h = self.downsample[k](h)  # 28 -> 14 -> 7
        h = self.middle(h, i)
        for k, block in enumerate(self.up):
            skip = skips.pop()
            h = block(torch.cat([h, skip], dim=1), i)
            if k < len(self.upsample):
                size = skips[-1].shape[-2:]  # 7 -> 14 -> 28
                h = self.upsample[k](F.interpolate(h, size=size, mode="nearest"))
        return self.out(F.elu(self.out_norm(h, i)))
