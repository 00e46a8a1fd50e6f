"""The paper's objective and sampler: exact negative log-likelihood and pixel-by-pixel sampling.

Objective (Pixel RNN paper, Eq. 1, with a Bernoulli per binary pixel):

    -log p(x) = - sum_i log p(x_i | x_<i) = sum_i BCE(logit_i(x_<i), x_i),

exact (no bound, no estimator): one forward pass returns every conditional's logit, because the
masked network cannot see ``x_i`` when it computes ``logit_i``. Sampling has no such shortcut: pixel
``i`` needs the sampled values of ``x_<i``, so it takes ``H * W`` sequential steps (Section 3.4:
"generation is sequential"). :func:`sample` here is the reference sampler, which runs the network
at every step; :func:`pixelcnn.fast_sampling.fast_sample` draws the same samples at about the
cost of one forward pass per image by caching activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.training import evaluating


def nll_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``-log p(x)`` in nats for each image of ``x`` ``[B, 1, H, W]`` in {0, 1}: Eq. 1 summed."""
    logits = model(x, y)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def marginal_nll_per_image(model: nn.Module, x: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """``-log p(x)`` of a class-conditional model with the label summed out, uniform prior:

        p(x) = sum_y p(y) p(x | y) = (1/K) sum_y prod_i p(x_i | x_<i, y)   (Eq. 3, marginalised),

    exact again (K forward passes). It is the quantity an unconditional model reports, and it lies
    between ``min_y -log p(x|y)`` and that plus ``log K``.
    """
    labels = [torch.full((x.shape[0],), k, device=x.device) for k in range(n_classes)]
    log_px_given_y = torch.stack([-nll_per_image(model, x, y) for y in labels])
    return -(torch.logsumexp(log_px_given_y, dim=0) - math.log(n_classes))


@torch.no_grad()
def test_nll(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    batch_size: int = 100,
    marginal: bool = False,
) -> float:
    """Mean exact NLL (nats per image) over a whole data set, evaluated in batches.

    ``marginal=True`` (class-conditional models) sums the label out instead of using ``y``.
    """
    total, device = 0.0, next(model.parameters()).device
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            if marginal:
                nll = marginal_nll_per_image(model, xb, model.n_classes)
            else:
                yb = None if y is None else y[start : start + batch_size].to(device)
                nll = nll_per_image(model, xb, yb)
            total += nll.double().sum().item()
    return total / x.shape[0]


@torch.no_grad()
def sample(
    model: nn.Module,
    n: int,
    y: torch.Tensor | None = None,
    shape: tuple[int, int] = (28, 28),
    generator: torch.Generator | None = None,
    crop: bool = True,
) -> torch.Tensor:
    """Draw ``n`` images ``[n, 1, H, W]`` in {0, 1} by ancestral sampling in raster order: the
    reference sampler.

    At step ``i`` the network is run on the partly filled canvas and pixel ``i`` is drawn from
    ``Bernoulli(sigmoid(logit_i))``; pixels after ``i`` are still zero and are never looked at.
    With ``crop=False`` that is all it does (the ground truth of the tests).

    ``crop=True`` runs the network only on the rows that can reach the current row (its
    ``receptive_rows`` rows above): the logit of row ``r`` depends on nothing outside that band, so
    the answer is identical (a unit test checks this). For the Gated PixelCNN it goes further: the
    vertical stack is run once per row and only the horizontal stack (one row) once per pixel,
    again with identical results.
    """
    height, width = shape
    param = next(model.parameters())
    x = torch.zeros(n, 1, height, width, dtype=param.dtype, device=param.device)
    reach = getattr(model, "receptive_rows", height) if crop else height
    with evaluating(model):
        for r in range(height):
            top = max(0, r - reach)
            if crop and hasattr(model, "row_links"):  # Gated PixelCNN: split the two stacks
                links = model.row_links(x[:, :, top:r], y)
                for c in range(width):
                    logits = model.row_logits(x[:, :, r : r + 1], links, y)[:, :, 0, c]
                    x[:, :, r, c] = torch.bernoulli(torch.sigmoid(logits), generator=generator)
                continue
            for c in range(width):
                logits = model(x[:, :, top : r + 1], y)[:, :, -1, c]
                x[:, :, r, c] = torch.bernoulli(torch.sigmoid(logits), generator=generator)
    return x
