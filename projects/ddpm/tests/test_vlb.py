"""The variational bound (vlb.py): the discretised decoder, the KL terms, the stratified sum."""

from __future__ import annotations

import math

import pytest
import torch
from ddpm import vlb
from ddpm.model import DDPM, to_model_range

torch.set_num_threads(1)  # the course machine's cores are shared
LEVELS = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1  # the 256 grey levels in [-1, 1]


@pytest.mark.parametrize("mean", [-1.7, -1.0, -0.31, 0.0, 0.5, 0.999, 1.3])
@pytest.mark.parametrize("sigma", [1e-3, 7e-3, 0.05, 0.6, 3.0])
def test_the_discretised_decoder_sums_to_one_over_the_256_values(mean, sigma):
    log_p = vlb.discretized_gaussian_log_likelihood(
        LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, sigma**2)
    )
    assert torch.isfinite(log_p).all()  # far bins too: no log(0)
    total = torch.exp(log_p).sum().item()
    assert total == pytest.approx(1.0, abs=1e-9)


def test_the_decoder_is_the_mass_of_the_bin():
    """For a wide Gaussian an interior bin holds about density x width; the edge bins hold the
    tails; and both are computed stably far out in the tails (no log of 0)."""
    x = torch.tensor([0.2], dtype=torch.float64)
    p = vlb.discretized_gaussian_log_likelihood(x, torch.zeros(1), torch.ones(1)).exp().item()
    density = math.exp(-0.5 * 0.2**2) / math.sqrt(2 * math.pi)
    assert p == pytest.approx(density * 2 / 255, rel=1e-4)
    edge = vlb.discretized_gaussian_log_likelihood(
        torch.tensor([1.0]), torch.zeros(1), torch.ones(1)
    )
    assert edge.exp().item() == pytest.approx(
        0.5 * math.erfc((1 - 1 / 255) / math.sqrt(2)), rel=1e-9
    )
    far = vlb.discretized_gaussian_log_likelihood(
        torch.tensor([0.9, -0.9]), torch.tensor([-0.9, 0.9]), torch.full((2,), 0.01)
    )
    assert torch.isfinite(far).all() and (far < -100).all()  # 18 standard deviations away


def test_gaussian_kl_is_torch_s():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(10, generator=gen), torch.randn(10, generator=gen)
    v1, v2 = torch.rand(10, generator=gen) + 0.1, torch.rand(10, generator=gen) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, v1.sqrt()), torch.distributions.Normal(m2, v2.sqrt())
    )
    assert torch.allclose(vlb.gaussian_kl(m1, v1, m2, v2), expected, atol=1e-6)


def test_strata_partition_the_time_steps():
    for T, k in ((1000, 20), (1000, 999), (10, 3), (5, 1)):
        blocks = vlb.strata(T, k)
        steps = [t for first, last in blocks for t in range(first, last + 1)]
        assert steps == list(range(2, T + 1)) and len(blocks) == k
    assert vlb.strata(10, None) == [(t, t) for t in range(2, 11)]
    with pytest.raises(ValueError, match="strata must be in 1..9"):
        vlb.strata(10, 10)


class PointMassNet(torch.nn.Module):
    """The exact eps_theta for data that is always the image ``x0``: eps = (x_t - sqrt(ab) x0)
    / sqrt(1 - ab)."""

    def __init__(self, schedule, x0):
        super().__init__()
        self.schedule, self.x0 = schedule, x0

    def forward(self, x_t, t, y=None):
        ab = self.schedule.at(self.schedule.alpha_bar, t, x_t)
        return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()


def test_the_bound_of_a_perfect_model_of_one_image_is_prior_plus_decoder():
    """With the exact eps_theta of a point mass and sigma_t^2 = beta_tilde_t, p_theta's mean is
    q's posterior mean at every t, so every L_{t-1} is 0; L_0 is the mass of the decoder's own
    bin and L_T the closed-form prior term."""
    torch.manual_seed(0)
    model = DDPM(T=100, base_channels=8, channel_mults=[1, 1, 2], groups=4)
    image = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    x0 = to_model_range(image)
    model.net = PointMassNet(model.schedule, x0)
    gen = torch.Generator().manual_seed(0)
    terms = vlb.bound(
        model, image.expand(3, -1, -1, -1), k=None, variance="beta_tilde", generator=gen
    )
    assert torch.allclose(terms["diffusion"], torch.zeros(3, dtype=torch.float64), atol=1e-5)
    sigma = vlb.decoder_variance(model, "beta_tilde", x0).double().sqrt()
    half = (1 / 255) / sigma
    interior = (image > 0) & (image < 255)
    log_bin = torch.where(
        interior,
        torch.log(torch.special.ndtr(half) - torch.special.ndtr(-half)),
        torch.special.log_ndtr(half),
    )
    assert torch.allclose(terms["decoder"], -log_bin.sum().expand(3), rtol=1e-6)
    ab_T = model.schedule.alpha_bar[100]
    prior = 0.5 * (-torch.log1p(-ab_T) + (1 - ab_T) + ab_T * x0.double() ** 2 - 1).sum()
    assert torch.allclose(terms["prior"], prior.expand(3), rtol=1e-9)
    assert torch.allclose(terms["bpd"], terms["total"] / (784 * math.log(2)))


def test_the_stratified_sum_over_t_is_unbiased(monkeypatch):
    """With L_{t-1} replaced by a known function of t, the mean of many stratified estimates is
    the full sum (within 4 standard errors), and with every t the estimate is the sum itself."""
    torch.manual_seed(0)
    model = DDPM(T=200, base_channels=8, channel_mults=[1, 1, 2], groups=4)
    x = torch.zeros(2000, 1, 1, 1, dtype=torch.uint8)

    def fake_term(model, x0, t, y, variance, generator):
        return 1.0 / t.double() + 0.01 * t.double()

    monkeypatch.setattr(vlb, "diffusion_term", fake_term)
    model.net = PointMassNet(model.schedule, torch.zeros(1, 1, 1, 1))  # the decoder: not tested
    exact = sum(1.0 / t + 0.01 * t for t in range(2, 201))
    full = vlb.bound(model, x[:4], k=None, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(full["diffusion"], torch.full((4,), exact, dtype=torch.float64))
    est = vlb.bound(model, x, k=7, generator=torch.Generator().manual_seed(1))["diffusion"]
    assert abs(est.mean().item() - exact) < 4 * est.std().item() / len(est) ** 0.5
    assert est.std().item() > 0  # it is an estimate, not the sum itself
