"""The decoder's likelihood, the shapes, and the bound of model.py.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import math

import pytest
import torch
from vqvae.model import TEST_CONFIG, Model
from vqvae.networks import decoder_mean, discretized_logistic_log_prob, sample_decoder

torch.set_num_threads(1)


@pytest.mark.parametrize("mu, log_s", [(0.0, -1.0), (0.9, -4.0), (-1.0, -6.5), (0.3, 1.0)])
def test_discretised_logistic_sums_to_one_over_the_256_levels(mu, log_s):
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    log_p = discretized_logistic_log_prob(
        levels, torch.full_like(levels, mu), torch.full_like(levels, log_s)
    )
    # abs 1e-5: bins of mass below 1e-5 use the density times the bin width (networks.py)
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_discretised_logistic_of_an_inner_level_is_the_cdf_difference():
    x = torch.tensor([100.0 / 255.0])
    mu, s = torch.tensor([-0.2]), 0.05
    centre = 2 * x - 1 - mu
    expected = torch.sigmoid((centre + 1 / 255) / s) - torch.sigmoid((centre - 1 / 255) / s)
    got = discretized_logistic_log_prob(x, mu, torch.tensor([math.log(s)])).exp()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_decoder_draws_are_grey_levels_near_the_mean():
    mu = torch.full((20_000,), 0.2)
    x = sample_decoder(mu, torch.full_like(mu, -3.0), torch.Generator().manual_seed(0))
    assert torch.equal(x * 255, (x * 255).round())
    assert (2 * x - 1).mean().item() == pytest.approx(0.2, abs=0.01)  # the logistic's mean
    assert decoder_mean(mu, mu)[0].item() == pytest.approx(0.6)


def _model() -> Model:
    torch.manual_seed(0)
    model = Model(**TEST_CONFIG).eval()
    with torch.no_grad():
        model.quantizer.embedding.normal_()
    return model


def test_a_28x28_image_becomes_a_7x7_grid_of_codes():
    model = _model()
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out["z_e"].shape == (3, 4, 7, 7) and out["codes"].shape == (3, 7, 7)
    assert out["mu"].shape == (3, 1, 28, 28)
    assert torch.equal(model.encode(x), out["codes"].flatten(1))
    assert torch.allclose(model.decode(model.encode(x)), decoder_mean(out["mu"], out["log_s"]))


def test_the_bound_is_the_decoder_nll_plus_the_prior_nll():
    model = _model()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m = model.evaluate(x)
        out = model(x)
        prior_nll = model.prior.nll(model.encode(x))
    to_bpd = 1 / (784 * math.log(2))
    assert torch.allclose(m["recon_bits_per_dim"], out["recon_nll"] * to_bpd)
    assert torch.allclose(m["bits_per_dim"], (out["recon_nll"] + prior_nll) * to_bpd)
    uniform = m["recon_bits_per_dim"] + 49 * math.log2(TEST_CONFIG["num_codes"]) / 784
    assert torch.allclose(m["bits_per_dim_uniform_prior"], uniform)


def test_samples_are_decoded_prior_samples():
    model = _model()
    images = model.sample(5, generator=torch.Generator().manual_seed(2))
    codes = model.prior.sample(5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(images, model.decode(codes))
