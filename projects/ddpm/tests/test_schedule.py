"""The forward process and its posterior (schedule.py) against independent computations."""

from __future__ import annotations

import pytest
import torch
from ddpm.schedule import NoiseSchedule

torch.set_num_threads(1)  # the course machine's cores are shared


def test_the_linear_schedule_is_ho_et_al_s():
    s = NoiseSchedule.linear()
    assert s.T == 1000 and s.beta[1] == pytest.approx(1e-4) and s.beta[1000] == pytest.approx(0.02)
    assert torch.allclose(
        s.beta[2:] - s.beta[1:-1], torch.full((999,), 0.0199 / 999, dtype=torch.float64)
    )
    assert s.alpha_bar[0] == 1.0
    assert s.alpha_bar[500] == pytest.approx(float(torch.prod(1 - s.beta[1:501])), rel=1e-12)
    assert 1e-6 < s.alpha_bar[1000] < 1e-4  # x_T is almost pure noise
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))


def test_q_xt_given_x0_in_closed_form_matches_iterating_the_forward_steps():
    """Eq. 4 against t applications of Eq. 2 to the same x_0, by Monte Carlo: means and
    variances within 5 standard errors (a fixed seed, so the test is repeatable)."""
    s = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    x0 = torch.tensor([-1.0, -0.3, 0.4, 1.0], dtype=torch.float64).expand(n, 4)
    x = x0.clone()
    checks = (1, 10, 100, 400, 1000)
    for t in range(1, 1001):
        x = s.q_step(x, t, torch.randn(x.shape, generator=gen, dtype=torch.float64))
        if t in checks:
            mean, var = s.q_mean_variance(x0[:1], t)
            emp_mean, emp_var = x.mean(0), x.var(0)
            se_mean = (var[0] / n).sqrt()
            se_var = var[0] * (2.0 / (n - 1)) ** 0.5
            assert ((emp_mean - mean[0]).abs() < 5 * se_mean).all(), (t, emp_mean, mean[0])
            assert ((emp_var - var[0]).abs() < 5 * se_var).all(), (t, emp_var, var[0])
    # and a sample of Eq. 4 has those moments too
    eps = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    direct = s.q_sample(x0, 1000, eps)
    assert torch.allclose(direct.var(0), x.var(0), rtol=0.05)


def _gaussian_posterior(s: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: int, prev: int):
    """q(x_prev | x_t, x_0) by conditioning the joint Gaussian of (x_prev, x_t) given x_0:
    x_prev ~ N(sqrt(ab_prev) x_0, 1 - ab_prev), x_t = sqrt(ab_t / ab_prev) x_prev + noise of
    variance 1 - ab_t / ab_prev. Written with a covariance matrix and torch.linalg, not with
    Eq. 7."""
    ab = s.alpha_bar
    a = (ab[t] / ab[prev]).sqrt()
    mu = torch.stack([ab[prev].sqrt() * x0, ab[t].sqrt() * x0])  # means of (x_prev, x_t)
    v_prev = 1 - ab[prev]
    cov = torch.tensor([[v_prev, a * v_prev], [a * v_prev, a**2 * v_prev + 1 - ab[t] / ab[prev]]])
    gain = cov[0, 1] / cov[1, 1]
    mean = mu[0] + gain * (x_t - mu[1])
    var = cov[0, 0] - cov[0, 1] * torch.linalg.solve(cov[1:, 1:], cov[1:, :1])[0, 0]
    return mean, var


@pytest.mark.parametrize("t, prev", [(2, 1), (10, 9), (500, 499), (1000, 999), (700, 650), (51, 1)])
def test_the_posterior_mean_and_variance_are_the_gaussian_conditional(t, prev):
    s = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(t)
    x0 = torch.rand(3, 5, generator=gen, dtype=torch.float64) * 2 - 1
    x_t = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    mean, var = s.posterior(x0, x_t, torch.full((3,), t), None if prev == t - 1 else prev)
    expected_mean, expected_var = _gaussian_posterior(s, x0, x_t, t, prev)
    assert torch.allclose(mean, expected_mean, rtol=1e-10, atol=1e-12)
    assert torch.allclose(var, expected_var.expand_as(var), rtol=1e-9)
    if prev == t - 1:  # Eq. 7's beta_tilde_t
        assert torch.allclose(var[0, 0], s.beta_tilde[t], rtol=1e-12)


def test_mu_theta_of_eq_11_is_the_posterior_mean_at_the_implied_x0():
    s = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    eps = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([1, 2, 3, 100, 999, 1000])
    x0 = s.predict_x0(x_t, t, eps)
    assert torch.allclose(s.q_sample(x0, t, eps), x_t, atol=1e-10)  # Eq. 15 inverts Eq. 4
    mean, _ = s.posterior(x0, x_t, t)
    assert torch.allclose(s.mean_from_eps(x_t, t, eps), mean, atol=1e-9)


def test_ddim_with_eta_1_has_the_ddpm_posterior_variance():
    s = NoiseSchedule.linear()
    like = torch.zeros(1, dtype=torch.float64)
    for t in (2, 3, 50, 999, 1000):  # consecutive steps: beta_tilde_t of Eq. 7
        sigma = s.ddim_sigma(t, t - 1, 1.0, like)
        assert torch.allclose(sigma**2, s.beta_tilde[t].reshape(1), rtol=1e-12)
        assert s.ddim_sigma(t, t - 1, 0.0, like).item() == 0.0
    for t, prev in ((1000, 980), (41, 21), (21, 1)):  # sub-sequences: the two-step posterior
        _, var = s.posterior(like, like, t, prev)
        assert torch.allclose(s.ddim_sigma(t, prev, 1.0, like) ** 2, var, rtol=1e-12)


def test_timesteps_are_song_et_al_s_linear_subsequence():
    s = NoiseSchedule.linear()
    assert s.timesteps(1000) == list(range(1, 1001))
    taus = s.timesteps(50)
    assert taus[:3] == [1, 21, 41] and taus[-1] == 981 and len(taus) == 50
    assert s.timesteps(1) == [1]
    for steps in (0, 1001):
        with pytest.raises(ValueError, match="must be in 1..1000"):
            s.timesteps(steps)
