"""The bounds and the estimator: reparameterised gradients, L_k >= ELBO, a toy exact model."""

from __future__ import annotations

import math

import pytest
import torch
from vae.model import VAE
from vae.objectives import (
    elbo,
    elbo_from_log_weights,
    estimate_log_likelihood,
    iwae_bound,
    log_normal_diag,
    log_standard_normal,
    log_weights,
    reparameterize,
)

from shared_utils.metrics import importance_sampled_log_likelihood

torch.set_num_threads(1)  # the course machine's cores are shared


def small_model(latent_dim: int = 3, dtype=torch.float64, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(latent_dim=latent_dim, hidden_dim=16).to(dtype)


def binary_batch(b: int = 4, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((b, 784), 0.3, dtype=dtype), generator=g)


def test_reparameterize_carries_gradient_to_mu_and_log_var():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    log_var = torch.tensor([0.2, -0.4], requires_grad=True)
    eps = torch.tensor([1.5, -0.7])
    z = reparameterize(mu, log_var, eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2))  # dz/dmu = 1
    sigma = torch.exp(0.5 * log_var.detach())
    assert torch.allclose(log_var.grad, 0.5 * sigma * eps)  # dz/dlog_var = sigma * eps / 2


def test_reparameterised_gradient_matches_analytic_gradient():
    # E_{z ~ N(mu, sigma^2)}[z^2] = mu^2 + sigma^2: d/dmu = 2 mu, d/dlog_var = sigma^2.
    torch.manual_seed(0)
    mu = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    log_var = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(200_000, dtype=torch.float64)
    (reparameterize(mu, log_var, eps) ** 2).mean().backward()
    assert mu.grad.item() == pytest.approx(2 * 0.7, abs=0.02)
    assert log_var.grad.item() == pytest.approx(math.exp(-0.3), abs=0.02)


def test_elbo_gradient_wrt_encoder_matches_finite_difference():
    model = small_model()
    x = binary_batch()
    eps = torch.randn(2, x.shape[0], model.latent_dim, dtype=torch.float64)
    weight = model.encoder[0].weight
    value = elbo(model, x, eps=eps).sum()
    (grad,) = torch.autograd.grad(value, weight)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    h = 1e-6
    for i, j in [(0, 10), (3, 200), (15, 783)]:
        with torch.no_grad():
            weight[i, j] += h
            up = elbo(model, x, eps=eps).sum().item()
            weight[i, j] -= 2 * h
            down = elbo(model, x, eps=eps).sum().item()
            weight[i, j] += h
        assert grad[i, j].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_iwae_gradient_reaches_encoder_and_decoder():
    model = small_model()
    loss = -iwae_bound(log_weights(model, binary_batch(), k=5)).mean()
    loss.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_log_weights_and_bound_shapes():
    model = small_model(dtype=torch.float32)
    x = binary_batch(5, torch.float32).view(5, 1, 28, 28)
    lw = log_weights(model, x, k=7)
    assert lw.shape == (7, 5)
    assert iwae_bound(lw).shape == (5,)
    assert elbo_from_log_weights(lw).shape == (5,)
    assert elbo(model, x, k=3).shape == (5,)
    assert torch.isfinite(lw).all() and (lw < 0).all()


def test_iwae_bound_not_below_elbo_on_the_same_samples():
    model = small_model()
    x = binary_batch(8)
    eps = torch.randn(20, 8, model.latent_dim, dtype=torch.float64)
    lw = log_weights(model, x, 20, eps=eps)
    assert (iwae_bound(lw) >= elbo_from_log_weights(lw) - 1e-12).all()  # Jensen, per example
    assert torch.allclose(iwae_bound(lw[:1]), elbo_from_log_weights(lw[:1]))  # L_1 = ELBO


def test_iwae_bound_non_decreasing_in_k_in_expectation():
    # E[L_1] < E[L_5] < E[L_50] (Burda Theorem 1), each expectation over 200 independent draws.
    model = small_model(latent_dim=5)
    x = binary_batch(4)
    torch.manual_seed(0)
    with torch.no_grad():
        lw = log_weights(model, x, 200 * 50).view(200, 50, 4)
    means = [iwae_bound(lw[:, :k].transpose(0, 1)).mean().item() for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2]


def test_closed_form_kl_elbo_matches_monte_carlo_elbo():
    # Kingma & Welling Eq. 10 (analytic KL) and the plain average of log weights agree in mean.
    model = small_model()
    x = binary_batch(3)
    torch.manual_seed(0)
    with torch.no_grad():
        analytic = elbo(model, x, k=5000)
        monte_carlo = elbo_from_log_weights(log_weights(model, x, 5000))
    assert torch.allclose(analytic, monte_carlo, atol=0.3)


class LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D): p(x) = N(b, W W^T + s^2 I) in closed form."""

    def __init__(self, d: int = 2, D: int = 3, s: float = 0.5, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, d, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.s, self.d, self.D = s, d, D

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.D, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.W.T + self.b
        log_var = torch.full_like(mean, 2 * math.log(self.s))
        return log_normal_diag(x, mean, log_var) + log_standard_normal(z)

    def exact_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z|x) = N(m, S), S = (I + W^T W / s^2)^-1, m = S W^T (x - b) / s^2 -> (m, chol S)."""
        precision = torch.eye(self.d, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / self.s**2
        return mean, torch.linalg.cholesky(cov)


def test_importance_sampled_estimate_is_exact_with_the_true_posterior_as_proposal():
    toy = LinearGaussian()
    x = torch.randn(6, toy.D, dtype=torch.float64) * 2
    mean, chol = toy.exact_posterior(x)
    posterior = torch.distributions.MultivariateNormal(mean, scale_tril=chol)

    def log_w(xb: torch.Tensor, n: int) -> torch.Tensor:
        z = posterior.sample((n,))
        return toy.log_joint(xb, z) - posterior.log_prob(z)

    for k in (1, 3, 100):
        estimate = importance_sampled_log_likelihood(log_w, x, k, chunk=7)
        assert torch.allclose(estimate, toy.log_px(x), atol=1e-9)


def test_importance_sampled_estimate_converges_with_a_poor_proposal():
    toy = LinearGaussian()
    torch.manual_seed(0)
    x = torch.randn(6, toy.D, dtype=torch.float64)
    mean, _ = toy.exact_posterior(x)
    q_mu, q_log_var = mean + 0.7, torch.full_like(mean, math.log(2.0))  # shifted and too wide

    def log_w(xb: torch.Tensor, n: int) -> torch.Tensor:
        z = reparameterize(q_mu, q_log_var, torch.randn(n, *q_mu.shape, dtype=torch.float64))
        return toy.log_joint(xb, z) - log_normal_diag(z, q_mu, q_log_var)

    exact = toy.log_px(x)
    gaps = [
        (exact - importance_sampled_log_likelihood(log_w, x, k, chunk=1000)).abs().mean().item()
        for k in (1, 100, 20_000)
    ]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.02


def test_estimate_log_likelihood_is_above_the_elbo():
    model = small_model(dtype=torch.float32)
    x = binary_batch(6, torch.float32)
    torch.manual_seed(0)
    ll = estimate_log_likelihood(model, x, k=500, chunk=128)
    with torch.no_grad():
        lower = elbo(model, x, k=500)
    assert ll.shape == (6,)
    assert (ll >= lower - 1e-3).all()
