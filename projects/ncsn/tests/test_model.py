"""Tests of the paper's math: noise levels, denoising score matching (Eqs. 5-6), Langevin
dynamics (Eq. 4), annealed Langevin dynamics (Algorithm 1), the score network and the 2-D toy.

Origin: written for dgm-course (MIT licence). Statistical tests are seeded; their tolerances are
several standard errors wide and named next to them.
"""

from __future__ import annotations

import math

import pytest
import torch
from ncsn.model import Model
from ncsn.score import (
    annealed_langevin,
    dsm_loss_per_example,
    geometric_sigmas,
    langevin,
    perturb,
    step_sizes,
)
from ncsn.toy import log_density, mode_fractions, run_samplers, true_score
from ncsn.unet import ScoreUNet

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "sigma_1, sigma_L, L", [(1.0, 0.01, 10), (20.0, 1.0, 10), (50.0, 0.01, 232)]
)
def test_sigmas_are_geometric_with_the_given_ends(sigma_1, sigma_L, L):
    sigmas = geometric_sigmas(sigma_1, sigma_L, L)
    assert sigmas.shape == (L,) and sigmas.dtype == torch.float64
    assert sigmas[0].item() == pytest.approx(sigma_1, rel=1e-12)
    assert sigmas[-1].item() == pytest.approx(sigma_L, rel=1e-12)
    ratios = sigmas[:-1] / sigmas[1:]
    expected = (sigma_1 / sigma_L) ** (1 / (L - 1))
    torch.testing.assert_close(ratios, torch.full_like(ratios, expected), rtol=1e-10, atol=0)
    with pytest.raises(ValueError):
        geometric_sigmas(0.01, 1.0, 10)  # must decrease


def test_step_sizes_follow_algorithm_1():
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    alphas = step_sizes(sigmas, 2e-5)
    torch.testing.assert_close(alphas, 2e-5 * sigmas**2 / 0.01**2)
    assert alphas[-1].item() == pytest.approx(2e-5) and alphas[0].item() == pytest.approx(0.2)


def test_annealed_langevin_takes_t_steps_of_size_alpha_i_at_each_level():
    """A score that records its calls: T calls per level, with the level index, in order; with a
    zero score each level adds Gaussian noise of variance T * alpha_i (seeded; 4000 x 2
    increments per level: the variance's relative standard error is 1.6%, tolerance 7%)."""
    sigmas = geometric_sigmas(1.0, 0.1, 4)
    calls: list[int] = []

    def zero_score(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        assert bool((i == i[0]).all())
        calls.append(int(i[0]))
        return torch.zeros_like(x)

    chain: list[torch.Tensor] = []
    x0 = torch.zeros(4000, 2)
    annealed_langevin(zero_score, x0, sigmas, 0.01, 3, torch.Generator().manual_seed(0), chain)
    assert calls == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    previous = x0
    for x, alpha in zip(chain, step_sizes(sigmas, 0.01).tolist(), strict=True):
        assert (x - previous).var().item() == pytest.approx(3 * alpha, rel=0.07)
        previous = x


def test_annealed_langevin_drift_is_half_alpha_times_the_score():
    """With the noise switched off (a generator whose randn we cannot switch off, so compare two
    runs whose only difference is a constant score c): x differs by sum_i T alpha_i / 2 * c."""
    sigmas = geometric_sigmas(1.0, 0.1, 3)
    x0 = torch.zeros(5, 2)
    c = torch.tensor([1.0, -2.0])
    a = annealed_langevin(
        lambda x, i: torch.zeros_like(x), x0, sigmas, 0.01, 4, torch.Generator().manual_seed(1)
    )
    b = annealed_langevin(
        lambda x, i: c.expand_as(x), x0, sigmas, 0.01, 4, torch.Generator().manual_seed(1)
    )
    shift = 4 * step_sizes(sigmas, 0.01).sum().item() / 2
    torch.testing.assert_close(b - a, (shift * c).expand_as(a), rtol=1e-5, atol=1e-6)


def test_langevin_samples_a_gaussian_energy():
    """E(x) = |x - m|^2 / (2 s^2): after 1500 steps of eps = 0.02 from x_0 = 0, 4000 chains have the
    target mean and variance; the discretisation's stationary variance is exactly
    s^2 / (1 - eps / (4 s^2)) (a linear recursion), which a large eps makes visible. Tolerances:
    mean 4 standard errors, variance 5 standard errors (sqrt(2/n) relative)."""
    m, s2, n = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 2.0]), 4000

    def score(x: torch.Tensor) -> torch.Tensor:  # -grad E(x)
        return -(x - m) / s2

    for eps in (0.02, 0.8):
        x = langevin(score, torch.zeros(n, 2), eps, 1500, torch.Generator().manual_seed(0))
        var = s2 / (1 - eps / (4 * s2))
        assert ((x.mean(0) - m).abs() < 4 * (var / n).sqrt()).all(), (eps, x.mean(0))
        rel = (x.var(0) / var - 1).abs()
        assert (rel < 5 * math.sqrt(2 / n)).all(), (eps, x.var(0), var)
    assert ((x.var(0) / s2 - 1).abs() > 0.1).all()  # eps = 0.8: visibly biased, as predicted


def test_dsm_minimiser_on_gaussian_data_is_the_perturbed_score():
    """Vincent (2011): the minimiser of Eq. 5 is grad log q_sigma. For x ~ N(mu, s^2) the
    perturbed density is N(mu, s^2 + sigma^2), whose score is linear, -(x~ - mu) / (s^2 + sigma^2);
    fitting s(x~) = a x~ + b by least squares on the DSM targets -(x~ - x) / sigma^2 recovers it
    (200,000 draws; tolerance 5 standard errors of the regression, whose residual has a standard
    deviation below 1 / sigma)."""
    gen = torch.Generator().manual_seed(0)
    mu, s2 = 1.5, 0.7
    for sigma in (0.1, 0.5, 2.0):
        x = mu + math.sqrt(s2) * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
        x_tilde, target = perturb(x, sigma, torch.randn(x.shape, generator=gen, dtype=x.dtype))
        design = torch.cat([x_tilde, torch.ones_like(x_tilde)], dim=1)
        a, b = torch.linalg.lstsq(design, target).solution.flatten().tolist()
        v, n = s2 + sigma**2, x.shape[0]
        se_a = 1 / (sigma * math.sqrt(n * v))
        se_b = math.sqrt(1 + mu**2 / v) / (sigma * math.sqrt(n))
        assert abs(a + 1 / v) < 5 * se_a and abs(b - mu / v) < 5 * se_b, (sigma, a, b)
        assert 5 * se_a < 0.1 / v  # the test can tell the right slope from a 10% error


def test_dsm_loss_of_the_true_score_is_lower_by_the_explicit_score_distance():
    """E[DSM(s)] = 1/2 sigma^2 E||s - grad log q_sigma||^2 + C (Vincent 2011, with Eq. 6's
    weight): the true score has the lowest loss and a perturbed score pays exactly the explicit
    distance (the same draws for both; tolerance 3%)."""
    gen = torch.Generator().manual_seed(1)
    mu, s2, sigma, n = torch.tensor([0.5, -1.0, 2.0, 0.0]), 0.3, 0.4, 100_000
    x = mu + math.sqrt(s2) * torch.randn(n, 4, generator=gen, dtype=torch.float64)
    x_tilde, _ = perturb(x, sigma, torch.randn(x.shape, generator=gen, dtype=x.dtype))
    true = -(x_tilde - mu) / (s2 + sigma**2)
    base = dsm_loss_per_example(true, x_tilde, x, sigma).mean().item()
    for wrong in (1.2 * true, true + 0.3, true - 0.1 * x_tilde):
        loss = dsm_loss_per_example(wrong, x_tilde, x, sigma).mean().item()
        explicit = (0.5 * sigma**2 * (wrong - true).pow(2).sum(1)).mean().item()
        assert loss > base
        assert loss - base == pytest.approx(explicit, rel=0.03)


def test_model_dsm_is_eq_6_summand_with_the_score_divided_by_sigma():
    torch.manual_seed(0)
    model = Model(channels=[8, 8, 16], groups=4, L=5)
    x = torch.rand(6, 1, 28, 28)
    i = torch.tensor([0, 1, 2, 3, 4, 0])
    z = torch.randn_like(x)
    sigma = model.sigmas[i].view(-1, 1, 1, 1)
    f = model.net(x + sigma * z, i)
    expected = 0.5 * (f + z).pow(2).flatten(1).sum(1)  # 1/2 ||sigma s_theta + z||^2
    torch.testing.assert_close(model.dsm(x, i, z), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        model.score(x, i), model.net(x, i) / model.sigmas[i].view(-1, 1, 1, 1)
    )


def test_score_network_is_conditioned_on_the_noise_level():
    torch.manual_seed(0)
    net = ScoreUNet(num_levels=3, channels=(8, 16, 16), groups=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # levels' embeddings differ
    x = torch.rand(2, 1, 28, 28)
    out = [net(x, torch.full((2,), k)) for k in range(3)]
    assert out[0].shape == x.shape
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    # each image depends only on its own level
    mixed = net(x, torch.tensor([0, 2]))
    torch.testing.assert_close(mixed[0], out[0][0])
    torch.testing.assert_close(mixed[1], out[2][1])


def test_toy_score_is_the_gradient_of_the_log_density():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
    for sigma in (0.0, 1.0, 7.5):
        xx = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(log_density(xx, sigma).sum(), xx)
        torch.testing.assert_close(true_score(x, sigma), grad)
    # normalised: a Riemann sum of the density over a wide box is 1
    g = torch.linspace(-15, 15, 301, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    assert log_density(grid, 1.0).exp().sum().item() * (30 / 300) ** 2 == pytest.approx(1, abs=1e-4)


def test_annealed_langevin_recovers_the_mixture_weights_and_plain_langevin_does_not():
    """The paper's Fig. 3 with exact scores, measured: 800 samples (standard error of a
    fraction about 0.015). Annealed: within 0.05 of pi_1 = 0.2; plain Langevin: near the 0.5
    of its symmetric initial distribution, far from 0.2."""
    out = run_samplers(n=800, seed=0)
    assert abs(mode_fractions(out["exact"])[0] - 0.2) < 0.05
    assert abs(mode_fractions(out["annealed_exact"])[0] - 0.2) < 0.05
    assert mode_fractions(out["langevin_exact"])[0] > 0.4
