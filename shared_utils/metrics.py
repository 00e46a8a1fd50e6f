"""Likelihood bookkeeping: unit conversions, log-mean-exp and importance-sampled NLL.

Origin: written for dgm-course (MIT licence). The importance-sampling estimator is the standard one
(e.g. Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, Eq. 8):
``log p(x) ~= log (1/k) sum_i p(x, z_i) / q(z_i | x)``, z_i ~ q(z | x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LN2 = math.log(2.0)


def nats_to_bits_per_dim(nll_nats: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """Negative log-likelihood per example in nats -> bits per dimension."""
    return nll_nats / (num_dims * LN2)


def bits_per_dim_to_nats(bpd: float | torch.Tensor, num_dims: int) -> float | torch.Tensor:
    """Bits per dimension -> negative log-likelihood per example in nats."""
    return bpd * num_dims * LN2


def dequantized_nll_to_discrete_bpd(
    nll_nats_continuous: float | torch.Tensor, num_dims: int, num_bins: int = 256
) -> float | torch.Tensor:
    """Continuous NLL of data scaled to [0, 1] -> bits/dim of the discrete 0..num_bins-1 data.

    Uniform dequantization: log p_discrete(x) >= log p(y) - D log(num_bins) for y = (x + u) / num_bins.
    """
    return nats_to_bits_per_dim(nll_nats_continuous + num_dims * math.log(num_bins), num_dims)


def log_mean_exp(x: torch.Tensor, dim: int = 0, keepdim: bool = False) -> torch.Tensor:
    """``log(mean(exp(x)))`` along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim, keepdim=keepdim) - math.log(x.shape[dim])


@torch.no_grad()
def importance_sampled_log_likelihood(
    log_weights: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    k: int,
    chunk: int | None = 50,
) -> torch.Tensor:
    """Per-example estimate of ``log p(x)`` from ``k`` importance samples.

    ``log_weights(x, n)`` must return ``[n, B]`` values ``log p(x, z_i) - log q(z_i | x)`` with
    fresh ``z_i ~ q(z | x)``. Samples are drawn ``chunk`` at a time (all at once if None) and combined
    with log-sum-exp, so memory does not grow with ``k``. The default of 50 keeps the tensors of a
    batch of 100 MNIST images within the CPU caches' reach: measured 1.8x faster than 500 for the
    VAE (see projects/vae/benchmarks), and the same draws from the RNG in the same order.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    chunk = chunk or k
    total: torch.Tensor | None = None
    drawn = 0
    while drawn < k:
        n = min(chunk, k - drawn)
        lse = torch.logsumexp(log_weights(x, n), dim=0)
        total = lse if total is None else torch.logaddexp(total, lse)
        drawn += n
    return total - math.log(k)


@torch.no_grad()
def dataset_mean(
    per_example: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, batch_size: int = 500
) -> float:
    """Mean over a whole dataset tensor of a per-example statistic, evaluated in batches."""
    total, count = 0.0, 0
    for start in range(0, data.shape[0], batch_size):
        values = per_example(data[start : start + batch_size])
        total += float(values.double().sum())
        count += values.numel()
    return total / count
