"""Encoder, decoder and the decoder's likelihood of the 256 grey levels.

Origin: written for dgm-course (MIT licence).

The paper's image encoder (section 4.1) is two strided 4x4 convolutions and two residual blocks
(ReLU, 3x3 conv, ReLU, 1x1 conv); the decoder mirrors it with transposed convolutions. Here the
same shape at MNIST scale: 28x28 -> 14x14 -> 7x7, so a 28x28 image becomes a 7x7 grid of codes.

The decoder's likelihood p(x | z_q) is a discretised logistic per pixel (Salimans et al.,
"PixelCNN++", 2017, one mixture component): the decoder outputs a mean mu and a log-scale log s
per pixel; grey level v in {0, ..., 255}, rescaled to x = 2 v / 255 - 1 in [-1, 1], has the mass
of the logistic between x - 1/255 and x + 1/255, the two end levels taking the tails:

    P(v) = sigma((x + 1/255 - mu) / s) - sigma((x - 1/255 - mu) / s),  0 < v < 255
    P(0) = sigma((-1 + 1/255 - mu) / s),   P(255) = 1 - sigma((1 - 1/255 - mu) / s)

It sums to one over the 256 levels, so -log2 P per pixel is a bits/dim of the discrete data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOG_SCALE_MIN = -7.0


class ResidualBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) (section 4.1)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv1 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


class Encoder(nn.Module):
    """x [B, 1, 28, 28] in [0, 1] -> z_e(x) [B, D, 7, 7]."""

    def __init__(self, hidden: int, code_dim: int, res_hidden: int, num_res: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, hidden, 4, stride=2, padding=1),  # 14x14
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1),  # 7x7
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            *[ResidualBlock(hidden, res_hidden) for _ in range(num_res)],
            nn.ReLU(),
            nn.Conv2d(hidden, code_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2.0 * x - 1.0)


class Decoder(nn.Module):
    """z_q [B, D, 7, 7] -> (mu, log s) of the discretised logistic, each [B, 1, 28, 28]."""

    def __init__(self, hidden: int, code_dim: int, res_hidden: int, num_res: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, padding=1),
            *[ResidualBlock(hidden, res_hidden) for _ in range(num_res)],
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),  # 14x14
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, 2, 4, stride=2, padding=1),  # 28x28, 2 channels
        )

    def forward(self, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(z_q)
        return out[:, :1], out[:, 1:].clamp(min=LOG_SCALE_MIN)


def discretized_logistic_log_prob(
    x: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor
) -> torch.Tensor:
    """log P(x) per pixel for ``x`` in [0, 1] on the grid v / 255 (module docstring)."""
    x = 2.0 * x - 1.0  # [-1, 1]
    centered = x - mu
    inv_s = torch.exp(-log_s)
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = F.logsigmoid(plus_in)  # log P for v = 0
    log_one_minus_cdf_min = -F.softplus(min_in)  # log P for v = 255
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    # where the mass is too small for float32, use the density at the centre times the bin width
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_s - 2.0 * F.softplus(mid_in)
    log_mid = torch.where(
        cdf_delta > 1e-5,
        torch.log(cdf_delta.clamp(min=1e-12)),
        log_pdf_mid - torch.log(torch.tensor(127.5)),
    )
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_mid)
    )


def decoder_mean(mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """The image shown for a code grid: the logistic's location mu, back in [0, 1]."""
    return ((mu + 1.0) / 2.0).clamp(0.0, 1.0)


def sample_decoder(
    mu: torch.Tensor, log_s: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A draw of the 256 grey levels from the discretised logistic, in [0, 1]."""
    u = torch.rand(mu.shape, generator=generator, device=mu.device).clamp(1e-5, 1 - 1e-5)
    x = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
    return torch.round((x.clamp(-1.0, 1.0) + 1.0) * 127.5) / 255.0
