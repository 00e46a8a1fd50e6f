"""The invertible layers of NICE and RealNVP; each maps ``x -> (y, log|det dy/dx|)`` and back.

Every layer has ``forward(x) -> (y, logdet)`` with ``logdet`` of shape ``[B]`` (one value per
example) and ``inverse(y) -> x``. A flow is a composition, so its log-determinant is the sum of
its layers' (RealNVP Sec. 3.5).

**NICE** (Dinh, Krueger & Bengio, 2015):

* :class:`AdditiveCoupling`, the additive coupling law (NICE Sec. 3.3: the general coupling
  law of Sec. 3.2 with ``g(a; b) = a + b``): split the dimensions into ``I1``, ``I2`` and
  ``y_I1 = x_I1``, ``y_I2 = x_I2 + m(x_I1)``; inverse ``x_I2 = y_I2 - m(y_I1)``. The Jacobian is
  unit lower-triangular, so ``log|det| = 0`` (volume preserving).
* :class:`DiagonalScaling`, NICE Sec. 3.4: ``y = x * exp(s)`` elementwise, ``log|det| = sum s``
  (the paper's diagonal matrix ``S``, here ``S_ii = exp(s_i) > 0``). The only layer of NICE that
  changes volume.

**RealNVP** (Dinh, Sohl-Dickstein & Bengio, 2017):

* :class:`MaskedAffineCoupling`, the affine coupling layer in its masked form (RealNVP Eq. 4-9):
  ``y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))`` (Eq. 9) with a binary mask ``b``.
  The Jacobian is triangular with diagonal ``exp(s)`` on the changed entries (Eq. 6), so
  ``log|det| = sum((1 - b) * s)``; the inverse (Eq. 7-8) is
  ``x = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y))``, with no need to invert ``s`` or
  ``t``. With a spatial checkerboard mask (Sec. 3.4, Fig. 3 left) it is RealNVP's checkerboard
  coupling; with a vector mask it is the coupling of the 2-D toy flows.
* :class:`ChannelAffineCoupling`, the channel-wise mask of Sec. 3.4 (Fig. 3 right): one half of
  the channels conditions the affine map of the other half. Written as a split rather than a
  mask, so that ``s`` and ``t`` are only computed for the channels they change.
* :class:`Squeeze`, Sec. 3.6: each ``2 x 2 x c`` block becomes ``1 x 1 x 4c``
  (``[B, C, H, W] -> [B, 4C, H/2, W/2]``), a permutation, ``log|det| = 0``.

Stability: the log-scale is bounded, ``s = scale * tanh(raw)`` with a learned per-channel
``scale`` (:class:`BoundedScale`), and the last layer of every ``s``/``t`` network starts at
zero, so every coupling starts as the identity. Neither is in the papers; both are common in
implementations and keep the first steps of training from blowing up ``exp(s)``.

No batch normalization: the paper uses it inside ``s``/``t`` and as a flow layer with running
averages (Sec. 3.7, App. E). A flow without it is a fixed function of its weights (train and eval
mode agree, no statistics to carry), so it is exactly invertible in both modes and a resumed run
is bitwise the straight one; the price is some training speed on deep models.
"""

from __future__ import annotations

import torch
from torch import nn


def _sum_per_example(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


class BoundedScale(nn.Module):
    """``s = scale * tanh(raw)``: log-scales bounded by a learned ``scale`` (one per channel,
    starting at 1), so ``exp(s)`` cannot overflow however large ``raw`` gets."""

    def __init__(self, channels: int, dims: int = 4) -> None:
        super().__init__()
        shape = (1, channels) + (1,) * (dims - 2)
        self.scale = nn.Parameter(torch.ones(shape))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(raw)


# --------------------------------------------------------------------------------------------------
# NICE
# --------------------------------------------------------------------------------------------------


def mlp(in_dim: int, out_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """A ReLU MLP with ``layers`` hidden layers of ``hidden`` units (NICE Sec. 5.1: the coupling
    functions ``m`` are rectified MLPs); the output layer starts at zero."""
    dims = [in_dim] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        modules += [nn.Linear(a, b), nn.ReLU()]
    last = nn.Linear(dims[-1], out_dim)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*modules, last)


class AdditiveCoupling(nn.Module):
    """NICE's additive coupling law on flat vectors ``[B, D]`` (``D`` even).

    ``I1`` and ``I2`` are the even and odd coordinates (``parity`` 0: ``I1`` = even, changed = odd;
    ``parity`` 1: the reverse), as NICE Sec. 5.1 partitions MNIST, alternating from layer to layer.

        y_I1 = x_I1,   y_I2 = x_I2 + m(x_I1)      (NICE Sec. 3.3: g(a; b) = a + b)
        x_I2 = y_I2 - m(y_I1)                      (NICE Sec. 3.2; log|det| = 0)
    """

    def __init__(self, dim: int, parity: int, hidden: int, layers: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"AdditiveCoupling needs an even dimension, not {dim}")
        self.dim, self.parity = dim, parity
        self.m = mlp(dim // 2, dim // 2, hidden, layers)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = x.reshape(x.shape[0], self.dim // 2, 2)
        return pairs[..., self.parity], pairs[..., 1 - self.parity]  # (kept I1, changed I2)

    def _join(self, kept: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        parts = (kept, changed) if self.parity == 0 else (changed, kept)
        return torch.stack(parts, dim=-1).reshape(kept.shape[0], self.dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, changed = self._split(x)
        y = self._join(kept, changed + self.m(kept))
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        kept, changed = self._split(y)
        return self._join(kept, changed - self.m(kept))


class DiagonalScaling(nn.Module):
    """NICE Sec. 3.4: ``y = exp(s) * x`` elementwise, ``log|det| = sum_i s_i`` (the matrix S with
    ``S_ii = exp(s_i)``); ``s`` starts at 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale)


# --------------------------------------------------------------------------------------------------
# RealNVP
# --------------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """``h + conv(relu(conv(relu(h))))``, 3x3 convolutions (the residual blocks of RealNVP's
    ``s``/``t`` networks, Sec. 4.1, without their batch and weight normalization)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(torch.relu(self.conv1(torch.relu(h))))


class ResNetST(nn.Module):
    """The ``s`` and ``t`` functions of one coupling as one convolutional ResNet (RealNVP Sec. 4.1:
    "deep convolutional residual networks"): 3x3 conv ``in -> channels``, ``blocks`` residual
    blocks, ReLU, 3x3 conv ``channels -> 2 out`` (zero at the start); returns ``(s, t)`` with
    ``s = scale * tanh(raw)`` bounded (:class:`BoundedScale`)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.out = nn.Conv2d(channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.bound = BoundedScale(out_channels)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, t = self.out(torch.relu(self.blocks(self.inp(h)))).chunk(2, dim=1)
        return self.bound(raw), t


class MaskedAffineCoupling(nn.Module):
    """RealNVP's affine coupling with a binary mask ``b`` (Eq. 9); ``b = 1`` entries are kept.

    ``net(b * x) -> (s, t)``, each shaped like ``x``. ``mask`` is a buffer broadcastable to the
    input (not saved in checkpoints: it is rebuilt from the configuration)::

        y = b * x + (1 - b) * (x * exp(s) + t),    s, t = net(b * x)        (Eq. 9; Eq. 4-5)
        log|det dy/dx| = sum (1 - b) * s                                    (Eq. 6)
        x = b * y + (1 - b) * (y - t) * exp(-s),   s, t = net(b * y)        (Eq. 7-8)
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.mask.to(x.dtype)
        s, t = self.net(b * x)
        s, t = (1 - b) * s, (1 - b) * t
        y = b * x + (1 - b) * (x * torch.exp(s) + t)
        return y, _sum_per_example(s)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b = self.mask.to(y.dtype)
        s, t = self.net(b * y)
        s, t = (1 - b) * s, (1 - b) * t
        return b * y + (1 - b) * (y - t) * torch.exp(-s)


def checkerboard_mask(channels: int, height: int, width: int, parity: int) -> torch.Tensor:
    """RealNVP's spatial checkerboard mask (Sec. 3.4, Fig. 3 left): ``b[c, i, j] = 1`` where
    ``(i + j + parity)`` is even, the same for every channel; shape ``[1, C, H, W]``."""
    i = torch.arange(height).view(-1, 1)
    j = torch.arange(width).view(1, -1)
    b = ((i + j + parity) % 2 == 0).float()
    return b.expand(channels, height, width).unsqueeze(0).clone()


def checkerboard_coupling(
    channels: int, height: int, width: int, parity: int, hidden: int, blocks: int
) -> MaskedAffineCoupling:
    """A checkerboard affine coupling on ``[B, channels, height, width]``, ResNet ``s``/``t``."""
    mask = checkerboard_mask(channels, height, width, parity)
    return MaskedAffineCoupling(mask, ResNetST(channels, channels, hidden, blocks))


class ChannelAffineCoupling(nn.Module):
    """RealNVP's channel-wise masked coupling (Sec. 3.4, Fig. 3 right), as a split.

    ``parity`` 0 keeps the first half of the channels and changes the second; 1 the reverse.
    It equals :class:`MaskedAffineCoupling` with the channel mask ``b`` (Eq. 9), but ``s`` and
    ``t`` see only the kept channels and produce only the changed ones::

        y_keep = x_keep,  y_change = x_change * exp(s(x_keep)) + t(x_keep)   (Eq. 4-5)
        log|det| = sum s(x_keep)                                             (Eq. 6)
        x_change = (y_change - t(y_keep)) * exp(-s(y_keep))                  (Eq. 7-8)
    """

    def __init__(self, channels: int, parity: int, hidden: int, blocks: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(
                f"a channel-wise coupling needs an even number of channels, not {channels}"
            )
        self.half, self.parity = channels // 2, parity
        self.net = ResNetST(self.half, self.half, hidden, blocks)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, : self.half], x[:, self.half :]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, keep: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.cat((keep, change) if self.parity == 0 else (change, keep), dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep, change = self._split(x)
        s, t = self.net(keep)
        return self._join(keep, change * torch.exp(s) + t), _sum_per_example(s)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        keep, change = self._split(y)
        s, t = self.net(keep)
        return self._join(keep, (change - t) * torch.exp(-s))


class Squeeze(nn.Module):
    """RealNVP Sec. 3.6: ``[B, C, H, W] -> [B, 4C, H/2, W/2]``, each 2x2 spatial block into
    channels ``4c + 2i + j`` (``i``, ``j`` the row and column within the block); ``log|det| = 0``.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs an even height and width, not {h}x{w}")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        x = y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h, 2 * w)


class VectorAffineCoupling(MaskedAffineCoupling):
    """The masked affine coupling (Eq. 9) on flat vectors ``[B, D]`` with an MLP ``s``/``t``: the
    layer of the 2-D toy flows (``toy.py``)."""

    def __init__(self, mask: torch.Tensor, hidden: int, layers: int = 2) -> None:
        dim = mask.numel()
        super().__init__(mask.view(1, dim).float(), _VectorST(dim, hidden, layers))


class _VectorST(nn.Module):
    def __init__(self, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(dim, 2 * dim, hidden, layers)
        self.bound = BoundedScale(dim, dims=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, t = self.net(x).chunk(2, dim=1)
        return self.bound(raw), t
