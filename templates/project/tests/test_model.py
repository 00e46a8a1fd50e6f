"""Unit tests of the placeholder model's math (eqs. 1-3 of model.py), against closed forms.

Origin: written for dgm-course (MIT licence).

TODO: replace with tests of the paper's math when model.py changes: shapes, a value computed by
hand, a distribution that normalises, a mask that is autoregressive, a bound below the exact
likelihood. The tests of the plumbing (test_plumbing.py) stay as they are.
"""

from __future__ import annotations

import math

import pytest
import torch
from __slug__.model import Model


def test_nll_is_the_sum_of_per_pixel_bernoulli_nlls():
    gen = torch.Generator().manual_seed(0)
    model = Model(num_pixels=6)
    with torch.no_grad():
        model.logits.copy_(torch.randn(6, generator=gen))
    x = torch.bernoulli(torch.full((4, 6), 0.5), generator=gen)
    p = torch.sigmoid(model.logits).tolist()
    expected = [
        -sum(math.log(p[i]) if xi else math.log(1 - p[i]) for i, xi in enumerate(row))
        for row in x.tolist()
    ]
    assert model.nll(x).tolist() == pytest.approx(expected, rel=1e-5)
    assert model.loss(x).item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    metrics = model.evaluate(x)
    assert metrics["nll_nats"].tolist() == pytest.approx(expected, rel=1e-5)
    bits = [e / (6 * math.log(2)) for e in expected]
    assert metrics["bits_per_dim"].tolist() == pytest.approx(bits, rel=1e-5)


def test_untrained_model_is_a_fair_coin_per_pixel():
    x = torch.bernoulli(torch.full((3, 784), 0.3), generator=torch.Generator().manual_seed(1))
    assert Model().nll(x).tolist() == pytest.approx([784 * math.log(2)] * 3, rel=1e-6)


def test_closed_form_fit_is_the_pixel_mean_and_a_minimum():
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(500, 10, generator=gen) * 0.8 + 0.1
    model = Model.fit(probs)
    torch.testing.assert_close(torch.sigmoid(model.logits), probs.mean(0), atol=1e-5, rtol=0)
    loss = model.loss(probs)  # E_x[NLL] is linear in x, so the mean image suffices
    loss.backward()
    assert model.logits.grad.abs().max() < 1e-4


def test_samples_are_binary_with_the_model_pixel_probabilities():
    model = Model.fit(torch.linspace(0.05, 0.95, 784).expand(2, -1))
    x = model.sample(2000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2000, 1, 28, 28)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    freq = x.reshape(2000, -1).mean(0)
    assert (freq - torch.sigmoid(model.logits)).abs().max() < 0.05  # 4.5 standard errors
