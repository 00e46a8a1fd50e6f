"""RealNVP's multi-scale flow and NICE's coupling stack for 28x28 grey images, one interface.

A flow ``f`` maps an image ``y`` (in the logit space of ``preprocess.py``) to latents ``z`` with a
simple prior; by the change of variables (RealNVP Sec. 3.1, Eq. 2-3; NICE Sec. 2)

    log p_Y(y) = log p_Z(f(y)) + log |det df(y)/dy|,

and a sample is ``y = f^{-1}(z)``, ``z ~ p_Z``. :class:`Flow` is either of

* ``kind="realnvp"``, the multi-scale architecture of RealNVP Sec. 3.6 (Eq. 10-13), sized for a
  CPU: with ``scales = L``, each of the first ``L - 1`` scales is 3 checkerboard affine couplings,
  a squeeze, 3 channel-wise affine couplings, and then half of the channels are factored out as
  latents ``z^(i)`` (``(z^(i+1), h^(i+1)) = f^(i+1)(h^(i))``); the last scale is 4 checkerboard
  couplings (as in the paper). For ``1 x 28 x 28`` and ``L = 3``::

      1x28x28 --3 checkerboard--> squeeze 4x14x14 --3 channel-wise--> z1: 2x14x14 | h1: 2x14x14
      2x14x14 --3 checkerboard--> squeeze 8x7x7   --3 channel-wise--> z2: 4x7x7   | h2: 4x7x7
      4x7x7   --4 checkerboard--> z3: 4x7x7                               (392 + 196 + 196 = 784)

  Every ``s``/``t`` is a ResNet of ``blocks`` residual blocks with ``channels`` feature maps
  (``layers.ResNetST``) at every scale (the paper uses 8 blocks of 64 feature maps on CIFAR-10,
  batch norm and weight norm; we use none, see ``layers.py``).
* ``kind="nice"``, NICE Sec. 5.1 on the flattened 784-d image: ``nice_couplings`` additive
  coupling layers (odd/even partition, alternating), each ``m`` a ReLU MLP with ``nice_layers``
  hidden layers of ``nice_hidden`` units (paper: 4 couplings, 5 x 1000 units), then the diagonal
  scaling layer. It runs in the same logit space with the same prior, so that it is an ablation
  of the coupling law (additive, volume preserving vs affine) on one data pipeline.

The prior is a standard normal on every latent (RealNVP Sec. 4.1); ``prior="logistic"`` gives
NICE's standard logistic (NICE Sec. 3.5, used for its MNIST model).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from realnvp.layers import (
    AdditiveCoupling,
    ChannelAffineCoupling,
    DiagonalScaling,
    Squeeze,
    checkerboard_coupling,
)
from realnvp.preprocess import DEFAULT_ALPHA, bits_per_dim, dequantize, logit_transform, to_image
from shared_utils.training import evaluating

KINDS = ("realnvp", "nice")
PRIORS = ("gaussian", "logistic")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Scale(nn.Module):
    """One scale of RealNVP Sec. 3.6 on ``[B, C, H, W]``.

    Not final: 3 checkerboard couplings (alternating masks), squeeze to ``4C x H/2 x W/2``, 3
    channel-wise couplings (alternating halves), then the first ``2C`` channels are factored out
    as this scale's latent and the other ``2C`` go on (Eq. 11). Final: 4 checkerboard couplings,
    all of whose output is the last latent (Eq. 12).
    """

    def __init__(
        self, channels: int, height: int, width: int, hidden: int, blocks: int, final: bool
    ) -> None:
        super().__init__()
        self.final = final
        n_checker = 4 if final else 3
        self.checker = nn.ModuleList(
            checkerboard_coupling(channels, height, width, i % 2, hidden, blocks)
            for i in range(n_checker)
        )
        self.squeeze = None if final else Squeeze()
        self.channel = nn.ModuleList(
            []
            if final
            else [ChannelAffineCoupling(4 * channels, i % 2, hidden, blocks) for i in range(3)]
        )

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``h -> (z, h_next, logdet)``; ``h_next`` is None for the final scale."""
        logdet = h.new_zeros(h.shape[0])
        for layer in self.checker:
            h, ld = layer(h)
            logdet = logdet + ld
        if self.final:
            return h, None, logdet
        h, _ = self.squeeze(h)
        for layer in self.channel:
            h, ld = layer(h)
            logdet = logdet + ld
        z, h_next = h.chunk(2, dim=1)
        return z, h_next, logdet

    def inverse(self, z: torch.Tensor, h_next: torch.Tensor | None) -> torch.Tensor:
        h = z if self.final else torch.cat([z, h_next], dim=1)
        if not self.final:
            for layer in reversed(self.channel):
                h = layer.inverse(h)
            h = self.squeeze.inverse(h)
        for layer in reversed(self.checker):
            h = layer.inverse(h)
        return h


class MultiScaleFlow(nn.Module):
    """RealNVP's multi-scale architecture (Sec. 3.6): ``h^(0) = x``,
    ``(z^(i+1), h^(i+1)) = f^(i+1)(h^(i))``, ``z^(L) = f^(L)(h^(L-1))``,
    ``z = (z^(1), ..., z^(L))`` (Eq. 10-13)."""

    def __init__(
        self, in_channels: int, image_size: int, scales: int, hidden: int, blocks: int
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1, not {scales}")
        if image_size % 2 ** (scales - 1):
            raise ValueError(
                f"{scales} scales squeeze {scales - 1} times: the image size {image_size} must be "
                f"divisible by {2 ** (scales - 1)}"
            )
        c, s = in_channels, image_size
        self.scales = nn.ModuleList()
        self.latent_shapes: list[tuple[int, int, int]] = []
        for i in range(scales):
            final = i == scales - 1
            self.scales.append(Scale(c, s, s, hidden, blocks, final))
            if final:
                self.latent_shapes.append((c, s, s))
            else:
                c, s = 2 * c, s // 2  # squeeze: 4c channels, half of them factored out
                self.latent_shapes.append((c, s, s))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        zs, logdet, h = [], x.new_zeros(x.shape[0]), x
        for scale in self.scales:
            z, h, ld = scale(h)
            zs.append(z)
            logdet = logdet + ld
        return zs, logdet

    def inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        h = None
        for scale, z in zip(reversed(self.scales), reversed(zs), strict=True):
            h = scale.inverse(z, h)
        return h


class NICEFlow(nn.Module):
    """NICE Sec. 5.1: additive couplings with alternating odd/even partitions on the flattened
    image, then the diagonal scaling layer (Sec. 3.4); one latent of ``D`` dimensions."""

    def __init__(self, shape: tuple[int, int, int], couplings: int, hidden: int, layers: int):
        super().__init__()
        self.shape = shape
        dim = math.prod(shape)
        self.couplings = nn.ModuleList(
            AdditiveCoupling(dim, i % 2, hidden, layers) for i in range(couplings)
        )
        self.scaling = DiagonalScaling(dim)
        self.latent_shapes = [(dim,)]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = x.flatten(1)
        for layer in self.couplings:
            h, _ = layer(h)  # log|det| = 0
        z, logdet = self.scaling(h)
        return [z], logdet

    def inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        h = self.scaling.inverse(zs[0])
        for layer in reversed(self.couplings):
            h = layer.inverse(h)
        return h.reshape(h.shape[0], *self.shape)


def prior_log_prob(z: torch.Tensor, prior: str) -> torch.Tensor:
    """``log p_Z(z)`` summed over the dimensions of each example: standard normal
    ``-z^2/2 - log(2 pi)/2`` or standard logistic ``-softplus(z) - softplus(-z)`` per dimension."""
    if prior == "gaussian":
        per_dim = -0.5 * z**2 - HALF_LOG_2PI
    else:
        per_dim = -nn.functional.softplus(z) - nn.functional.softplus(-z)
    return per_dim.flatten(1).sum(1)


def prior_sample(
    shape: tuple[int, ...], prior: str, generator: torch.Generator | None, device=None
) -> torch.Tensor:
    """A draw from the standard prior (normal, or logistic by inverse CDF)."""
    if prior == "gaussian":
        return torch.randn(shape, generator=generator, device=device)
    u = torch.rand(shape, generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def _device_of(generator: torch.Generator | None) -> torch.device | None:
    """Where ``generator`` draws (None: the default, the CPU)."""
    return None if generator is None else generator.device


class Flow(nn.Module):
    """A NICE or RealNVP flow on images ``[B, in_channels, image_size, image_size]`` in logit space,
    with the pre-processing constant ``alpha`` and the prior it was trained with.

    ``forward(y) -> (zs, logdet)``, ``inverse(zs) -> y``, ``log_prob(y)`` (Eq. 3),
    ``bits_per_dim(x)`` for dequantized images ``x`` in ``[0, 1)`` (``preprocess.py``), and
    ``sample(n, temperature, generator)`` (images in ``[0, 1]``). The keyword arguments are JSON
    values, stored in checkpoints' sidecars (``config()``).
    """

    def __init__(
        self,
        kind: str = "realnvp",
        in_channels: int = 1,
        image_size: int = 28,
        scales: int = 3,
        channels: int = 32,
        blocks: int = 2,
        nice_couplings: int = 4,
        nice_hidden: int = 256,
        nice_layers: int = 5,
        prior: str = "gaussian",
        alpha: float = DEFAULT_ALPHA,
    ) -> None:
        super().__init__()
        if kind not in KINDS or prior not in PRIORS:
            raise ValueError(f"kind must be one of {KINDS} and prior one of {PRIORS}")
        self._config = {
            "kind": kind,
            "in_channels": in_channels,
            "image_size": image_size,
            "scales": scales,
            "channels": channels,
            "blocks": blocks,
            "nice_couplings": nice_couplings,
            "nice_hidden": nice_hidden,
            "nice_layers": nice_layers,
            "prior": prior,
            "alpha": alpha,
        }
        self.kind, self.prior, self.alpha = kind, prior, alpha
        self.image_shape = (in_channels, image_size, image_size)
        self.num_dims = math.prod(self.image_shape)
        if kind == "realnvp":
            self.flow = MultiScaleFlow(in_channels, image_size, scales, channels, blocks)
        else:
            self.flow = NICEFlow(self.image_shape, nice_couplings, nice_hidden, nice_layers)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return dict(self._config)

    @property
    def latent_shapes(self) -> list[tuple[int, ...]]:
        """Per-example shape of each latent ``z^(i)`` (RealNVP: one per scale; NICE: one)."""
        return list(self.flow.latent_shapes)

    def forward(self, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``y -> (z^(1), ..., z^(L)), log|det df/dy|`` per example."""
        return self.flow(y)

    def inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        return self.flow.inverse(zs)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``log p_Y(y) = sum_i log p_Z(z^(i)) + log|det df/dy|`` (RealNVP Eq. 3), logit space."""
        zs, logdet = self.flow(y)
        return sum(prior_log_prob(z, self.prior) for z in zs) + logdet

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Per example: the NLL of the 8-bit images in bits/dim, from dequantized ``x`` in
        ``[0, 1)`` (logit transform, its Jacobian and the 1/256 scaling: ``preprocess.py``)."""
        y, logdet_pre = logit_transform(x, self.alpha)
        return bits_per_dim(self.log_prob(y), logdet_pre, self.num_dims)

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` in ``[0, 1]``: ``z ~ prior`` scaled by ``temperature``
        (RealNVP Sec. 3.1: ``x = f^{-1}(z)``; temperature 0 gives the image of ``z = 0``)."""
        param = next(self.parameters())
        zs = [
            temperature * prior_sample((n, *shape), self.prior, generator, _device_of(generator))
            for shape in self.latent_shapes
        ]
        zs = [z.to(param.device, param.dtype) for z in zs]
        return to_image(self.inverse(zs), self.alpha)


@torch.no_grad()
def dataset_bits_per_dim(
    model: Flow, pixels: torch.Tensor, noise: torch.Tensor, batch_size: int = 100
) -> torch.Tensor:
    """Bits/dim of every image of ``pixels`` (uint8 ``[N, C, H, W]``) dequantized with the fixed
    ``noise`` (``preprocess.dequantization_noise``), in eval mode; float64 ``[N]``."""
    device = next(model.parameters()).device
    out = []
    with evaluating(model):
        for i in range(0, pixels.shape[0], batch_size):
            x = dequantize(pixels[i : i + batch_size], noise=noise[i : i + batch_size])
            out.append(model.bits_per_dim(x.to(device)).double().cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)
