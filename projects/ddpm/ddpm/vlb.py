"""The variational bound on the negative log-likelihood, in bits/dim (Ho et al. Eq. 5 and Sec. 3.3).

    L = E_q[ D_KL(q(x_T | x_0) || p(x_T))                                           L_T
             + sum_{t=2}^{T} D_KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))   L_{t-1}
             - log p_theta(x_0 | x_1) ]                                              L_0     (Eq. 5)

>= -log p_theta(x_0), for the 256 grey levels of each pixel (x_0 in {-1, -1 + 2/255, ..., 1}).
Every term is a closed form given x_t: q's posterior (Eq. 6-7) and p_theta(x_{t-1} | x_t) =
N(mu_theta(x_t, t), sigma_t^2 I) (Eq. 11 for the mean, sigma_t^2 = beta_t or beta_tilde_t) are
Gaussians, and L_0 is the discretised decoder of Eq. 13: the mass that N(mu_theta(x_1, 1),
sigma_1^2) puts on the pixel's bin [x - 1/255, x + 1/255], the outermost bins extended to
-inf and +inf, so that the 256 probabilities sum to 1. At t = 1, sigma_1^2 = beta_1 for
``variance="beta"``; for ``"beta_tilde"`` beta_tilde_1 = 0 would make the decoder a point mass,
and beta_tilde_2 is used instead (as the authors' code does). Bits/dim: L / (D ln 2), D = 784.

Cost: one evaluation of eps_theta per term, T = 1000 per image. The sum over t is therefore
estimated without bias by stratified sampling (``strata`` = K): {2..T} is cut into K contiguous
blocks of (nearly) equal size n_k, one t_k is drawn uniformly in each block, and
sum_k n_k L_{t_k - 1} is the estimate (its expectation is the full sum, term by term); K = T - 1
(``strata=None``) computes every term, as the authors' code does. Each term draws its own x_t
from q(x_t | x_0), so either way the bound is a Monte Carlo estimate over x_t, unbiased for L.
"""

from __future__ import annotations

import math

import torch

from ddpm.model import DDPM, to_model_range

LN2 = math.log(2.0)


def gaussian_kl(
    mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor
) -> torch.Tensor:
    """D_KL(N(mean1, var1) || N(mean2, var2)) per element, in nats."""
    return 0.5 * (var2.log() - var1.log() + var1 / var2 + (mean1 - mean2) ** 2 / var2 - 1.0)


def _log_ndtr_difference(upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """log(Phi(upper) - Phi(lower)) for upper > lower, stable in both tails (the standard normal
    CDF Phi; a bin right of 0 is mirrored to the left, where log Phi is accurate)."""
    mirror = lower > 0
    up = torch.where(mirror, -lower, upper)
    lo = torch.where(mirror, -upper, lower)
    log_up, log_lo = torch.special.log_ndtr(up), torch.special.log_ndtr(lo)
    return log_up + torch.log((-torch.expm1(log_lo - log_up)).clamp_min(1e-300))


def discretized_gaussian_log_likelihood(
    x0: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor
) -> torch.Tensor:
    """log p(x_0 | x_1) per pixel (Eq. 13): the log of the integral of N(mean, variance) over
    [x_0 - 1/255, x_0 + 1/255], with the lower edge -inf at x_0 = -1 and the upper +inf at
    x_0 = 1. ``x0`` holds grey levels scaled to [-1, 1] (2 k / 255 - 1). Computed in float64."""
    x0, mean, variance = x0.double(), mean.double(), variance.double()
    sigma = variance.sqrt()
    upper = torch.where(x0 > 1.0 - 1e-3, torch.inf, (x0 + 1.0 / 255.0 - mean) / sigma)
    lower = torch.where(x0 < -1.0 + 1e-3, -torch.inf, (x0 - 1.0 / 255.0 - mean) / sigma)
    return _log_ndtr_difference(upper, lower)


def strata(T: int, k: int | None) -> list[tuple[int, int]]:
    """The K blocks [first, last] of {2..T} (``k`` None: every t on its own)."""
    count = T - 1
    k = count if k is None else k
    if not 1 <= k <= count:
        raise ValueError(f"the number of strata must be in 1..{count}, not {k}")
    bounds = [2 + (i * count) // k for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(k)]


def decoder_variance(model: DDPM, variance: str, like: torch.Tensor) -> torch.Tensor:
    """sigma_1^2 of the decoder p_theta(x_0 | x_1) (see the module docstring)."""
    s = model.schedule
    if variance == "beta":
        return s.at(s.beta, 1, like).expand_as(like)
    if variance == "beta_tilde":
        return s.at(s.beta_tilde, 2, like).expand_as(like)
    raise ValueError(f"variance is 'beta' or 'beta_tilde', not {variance!r}")


@torch.no_grad()
def prior_term(model: DDPM, x0: torch.Tensor) -> torch.Tensor:
    """L_T = D_KL(q(x_T | x_0) || N(0, I)) per image, in nats (no parameters: Sec. 3.1)."""
    mean, var = model.schedule.q_mean_variance(x0.double(), model.T)
    return gaussian_kl(mean, var, torch.zeros_like(mean), torch.ones_like(var)).flatten(1).sum(1)


@torch.no_grad()
def diffusion_term(
    model: DDPM,
    x0: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None,
    variance: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """L_{t-1} = D_KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) per image (nats), for
    time steps t >= 2 (one per image) and x_t ~ q(x_t | x_0) drawn from ``generator``."""
    s = model.schedule
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = s.q_sample(x0, t, eps)
    eps_pred = model.net(x_t, t, y).double()
    mean_q, var_q = s.posterior(x0.double(), x_t.double(), t)  # Eq. 6-7
    mean_p = s.mean_from_eps(x_t.double(), t, eps_pred)  # Eq. 11
    var_p = s.reverse_variance(t, mean_p, variance)
    return gaussian_kl(mean_q, var_q, mean_p, var_p).flatten(1).sum(1)


@torch.no_grad()
def decoder_term(
    model: DDPM,
    x0: torch.Tensor,
    y: torch.Tensor | None,
    variance: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """L_0 = -log p_theta(x_0 | x_1) per image (nats), x_1 ~ q(x_1 | x_0) (Eq. 13)."""
    s = model.schedule
    t = torch.ones(x0.shape[0], dtype=torch.long, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_1 = s.q_sample(x0, t, eps)
    mean = s.mean_from_eps(x_1.double(), t, model.net(x_1, t, y).double())
    log_p = discretized_gaussian_log_likelihood(x0, mean, decoder_variance(model, variance, mean))
    return -log_p.flatten(1).sum(1)


@torch.no_grad()
def bound(
    model: DDPM,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    k: int | None = 50,
    variance: str = "beta",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image estimate of L (Eq. 5) for images ``x`` (uint8 or [0, 1]) with labels ``y``
    (None: the unconditional model), the sum over t by ``k`` strata (None: every t). Returns
    the terms in nats (``prior``, ``diffusion``, ``decoder``, ``total``) and ``bpd``."""
    x0 = to_model_range(x)
    prior = prior_term(model, x0)
    diffusion = torch.zeros_like(prior)
    for first, last in strata(model.T, k):
        t = torch.randint(first, last + 1, (x0.shape[0],), generator=generator).to(x0.device)
        term = diffusion_term(model, x0, t, y, variance, generator)
        diffusion += (last - first + 1) * term
    decoder = decoder_term(model, x0, y, variance, generator)
    total = prior + diffusion + decoder
    dims = x0[0].numel()
    return {
        "prior": prior,
        "diffusion": diffusion,
        "decoder": decoder,
        "total": total,
        "bpd": total / (dims * LN2),
    }
