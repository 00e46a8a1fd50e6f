"""shared_utils.metrics: unit conversions and the importance-sampling estimator."""

from __future__ import annotations

import math

import pytest
import torch

from shared_utils import metrics


def test_nats_bits_round_trip():
    assert metrics.nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert metrics.bits_per_dim_to_nats(
        metrics.nats_to_bits_per_dim(81.3, 784), 784
    ) == pytest.approx(81.3)
    # uniform density on [0,1]^D has continuous NLL 0 -> exactly 8 bits/dim for 256 bins
    assert metrics.dequantized_nll_to_discrete_bpd(0.0, 10) == pytest.approx(8.0)


def test_log_mean_exp_is_stable_and_exact():
    x = torch.tensor([[1000.0, 1000.0], [1000.0, 1000.0 + math.log(3)]])
    out = metrics.log_mean_exp(x, dim=0)
    assert torch.allclose(out, torch.tensor([1000.0, 1000.0 + math.log(2.0)]))


def test_importance_sampling_with_exact_posterior_is_exact():
    """z ~ N(0,1), x|z ~ N(z,1): p(x)=N(0,2), p(z|x)=N(x/2,1/2). With q = posterior, each weight = p(x)."""
    x = torch.tensor([-1.0, 0.3, 2.0])

    def normal_logpdf(v, mean, var):
        return -0.5 * (math.log(2 * math.pi * var) + (v - mean) ** 2 / var)

    def log_w(xb, n):
        z = xb / 2 + math.sqrt(0.5) * torch.randn(n, xb.shape[0])
        return normal_logpdf(z, 0, 1) + normal_logpdf(xb, z, 1) - normal_logpdf(z, xb / 2, 0.5)

    est = metrics.importance_sampled_log_likelihood(log_w, x, k=10, chunk=3)
    assert torch.allclose(est, normal_logpdf(x, 0, 2), atol=1e-5)


def test_chunking_does_not_change_the_estimate():
    torch.manual_seed(0)
    table = torch.randn(12, 4)
    calls = iter(table.split([5, 5, 2]))
    a = metrics.importance_sampled_log_likelihood(
        lambda x, n: next(calls), torch.zeros(4), 12, chunk=5
    )
    b = metrics.log_mean_exp(table, 0)
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError):
        metrics.importance_sampled_log_likelihood(lambda x, n: table[:n], torch.zeros(4), 0)


def test_dataset_mean_batches():
    data = torch.arange(10.0)
    assert metrics.dataset_mean(lambda b: b * 2, data, batch_size=3) == pytest.approx(9.0)
