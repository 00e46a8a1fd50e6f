"""From 8-bit pixels to the logit space the flows model, and back to bits/dim of the pixels.

RealNVP Sec. 4.1 (and NICE Sec. 5.1) turn discrete images into continuous data in two steps:

1. **Uniform dequantization**: ``x = (pixel + u) / 256`` with ``u ~ U[0, 1)^D``, so ``x`` lies in
   ``[0, 1)^D``. For any density ``p`` of the continuous ``v = pixel + u`` on ``[0, 256)^D``,
   ``log P(pixel) = log E_u[p(pixel + u)] >= E_u[log p(pixel + u)]`` (Jensen; Theis, van den Oord &
   Bethge, ICLR 2016, Sec. 3.1), so minus the continuous log-likelihood upper-bounds the discrete
   negative log-likelihood.
2. **Logit transform**: ``y = logit(alpha + (1 - 2 alpha) x)``. It maps ``[0, 1)`` onto (most of)
   the real line, so that a flow with a Gaussian prior does not spend its capacity on the hard
   edges of the unit cube. RealNVP Sec. 4.1 writes ``logit(alpha + (1 - alpha) x)`` with
   ``alpha = 0.05`` (for its four natural-image datasets; it has no MNIST experiment); we use the
   symmetric form ``alpha + (1 - 2 alpha) x``, which maps 0 and 1 alike, as MAF (Papamakarios,
   Pavlakou & Murray, NeurIPS 2017, Sec. 4.3 / App. E.2) does with ``lambda = 1e-6`` for MNIST and
   ``0.05`` for CIFAR-10. ``--alpha`` chooses; 0.05 is the default.

Every term is accounted for (change of variables, RealNVP Sec. 3.1): with ``D`` dimensions,

    log p_x(x) = log p_y(y) + log |det dy/dx|,
    log |dy/dx_i| = log(1 - 2 alpha) - log s_i - log(1 - s_i),   s_i = alpha + (1 - 2 alpha) x_i,
    log p_v(pixel + u) = log p_x(x) - D log 256                     (the 1/256 scaling),
    bits/dim = -log p_v(pixel + u) / (D ln 2)
             = -(log p_y(y) + log |det dy/dx|) / (D ln 2) + log2(256).

Evaluated with one draw of ``u`` per image, this is a single-sample (unbiased) estimate of the
upper bound ``E_u[-log p_v(pixel + u)]`` on the discrete NLL, which is what RealNVP, Glow and
FFJORD report.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NUM_BINS = 256  # 8-bit pixels
LOG2_BINS = math.log2(NUM_BINS)  # = 8 bits/dim: the 1/256 scaling
DEFAULT_ALPHA = 0.05  # RealNVP Sec. 4.1
NOISE_CHUNK = 100  # images per draw of the evaluation noise (see dequantization_noise)


def dequantize(
    pixels: torch.Tensor,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x = (pixel + u) / 256`` in ``[0, 1)``: ``u ~ U[0, 1)`` drawn from ``generator``, or the
    given ``noise`` (same shape as ``pixels``). ``pixels``: uint8 or integer-valued floats."""
    if noise is None:
        noise = torch.rand(pixels.shape, generator=generator, dtype=torch.float32)
    return (pixels.to(noise.dtype) + noise) / NUM_BINS


def dequantization_noise(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Fixed evaluation noise ``u`` for ``n`` images of ``shape``, seeded with ``seed``.

    Drawn in chunks of ``NOISE_CHUNK`` images from one generator, so the noise of image ``i``
    does not depend on ``n``: the first 500 test images get the same noise whether 500 or all
    10,000 are evaluated."""
    gen = torch.Generator().manual_seed(seed)
    chunks, drawn = [], 0
    while drawn < n:
        chunk = torch.rand((NOISE_CHUNK, *shape), generator=gen)
        chunks.append(chunk[: n - drawn])
        drawn += chunk.shape[0]
    return torch.cat(chunks) if chunks else torch.empty((0, *shape))


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"alpha must be in [0, 0.5), not {alpha}")


def logit_transform(
    x: torch.Tensor, alpha: float = DEFAULT_ALPHA
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = logit(alpha + (1 - 2 alpha) x)`` and ``log |det dy/dx|`` per example ``[B]``.

    ``log |dy_i/dx_i| = log(1 - 2 alpha) + softplus(y_i) + softplus(-y_i)``, since
    ``-log s = softplus(-y)`` and ``-log(1 - s) = softplus(y)`` for ``s = sigmoid(y)``; written
    with softplus it stays finite and accurate for large ``|y|``."""
    _check_alpha(alpha)
    s = alpha + (1.0 - 2.0 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    log_jac = math.log(1.0 - 2.0 * alpha) + F.softplus(y) + F.softplus(-y)
    return y, log_jac.flatten(1).sum(1)


def inverse_logit_transform(y: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """``x = (sigmoid(y) - alpha) / (1 - 2 alpha)``, the inverse of :func:`logit_transform`."""
    _check_alpha(alpha)
    return (torch.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)


def to_image(y: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """Logit space -> displayable images in ``[0, 1]`` (clamped: a sample's ``y`` may fall outside
    the image of ``[0, 1]`` when ``alpha > 0``)."""
    return inverse_logit_transform(y, alpha).clamp(0.0, 1.0)


def bits_per_dim(
    log_prob_logit_space: torch.Tensor, logdet_preprocess: torch.Tensor, num_dims: int
) -> torch.Tensor:
    """NLL of the 8-bit data in bits/dim from ``log p_y(y)`` and ``log |det dy/dx|`` (module
    docstring): ``-(log p_y + log|det dy/dx|) / (D ln 2) + log2(256)``, per example."""
    return -(log_prob_logit_space + logdet_preprocess) / (num_dims * math.log(2.0)) + LOG2_BINS
