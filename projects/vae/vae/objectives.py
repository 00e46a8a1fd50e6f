"""The two bounds on log p(x): the ELBO (VAE) and the importance weighted bound L_k (IWAE).

Notation of Burda et al. (2016): x an image, h (here ``z``) the latent, q(z|x) the recognition
model, importance weights w_i = p(x, z_i) / q(z_i | x) with z_i ~ q(z | x), i = 1..k.

* ELBO, Burda Eq. 3:
      L(x) = E_q[log p(x, z) - log q(z | x)] <= log p(x)                      (Jensen)
  estimated with k reparameterised samples averaged (Kingma & Welling's estimator, their Eq. 10
  for the Gaussian encoder, with the KL(q || p(z)) term in closed form).
* IWAE bound, Burda Eq. 8:
      L_k(x) = E_{z_1..z_k ~ q}[log (1/k) sum_i w_i] <= log p(x),
  L_1 = L, L_k <= L_{k+1} (Burda Theorem 1), and L_k -> log p(x) as k -> inf when p/q is bounded.

Both are differentiated through the reparameterisation z = mu + sigma * eps, eps ~ N(0, I)
(Kingma & Welling Sec. 2.4), so gradients reach the encoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shared_utils.metrics import importance_sampled_log_likelihood, log_mean_exp
from vae.model import VAE

LOG_2PI = math.log(2 * math.pi)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(log_var / 2): a differentiable sample of q(z|x)."""
    return mu + torch.exp(0.5 * log_var) * eps


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 * torch.exp(-log_var)).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension: the prior log p(z)."""
    return -0.5 * (LOG_2PI + z**2).sum(-1)


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x | z) = sum_j x_j log sigmoid(l_j) + (1 - x_j) log sigmoid(-l_j); broadcasts x."""
    x = x.expand_as(logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def log_weights(
    model: VAE, x: torch.Tensor, k: int, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """log w_i = log p(x, z_i) - log q(z_i | x) for k reparameterised z_i ~ q(z|x): [k, B].

    The shared core of both bounds and of the importance-sampled test log-likelihood. ``eps``
    ([k, B, d] standard normal noise) may be passed to evaluate both bounds on the same samples.
    """
    x = x.reshape(x.shape[0], -1)
    mu, log_var = model.encode(x)
    if eps is None:
        eps = torch.randn(k, *mu.shape, dtype=mu.dtype, device=mu.device)
    z = reparameterize(mu, log_var, eps)  # [k, B, d]
    log_px_given_z = log_bernoulli(x, model.decode(z))  # [k, B]
    log_pz = log_standard_normal(z)
    log_qz = log_normal_diag(z, mu, log_var)
    return log_px_given_z + log_pz - log_qz


def elbo_from_log_weights(log_w: torch.Tensor) -> torch.Tensor:
    """Monte Carlo ELBO (Burda Eq. 3): (1/k) sum_i log w_i, per example [B]."""
    return log_w.mean(0)


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """IWAE bound L_k (Burda Eq. 8): log (1/k) sum_i w_i, per example [B]."""
    return log_mean_exp(log_w, dim=0)


def elbo(model: VAE, x: torch.Tensor, k: int = 1, eps: torch.Tensor | None = None) -> torch.Tensor:
    """ELBO with the Gaussian KL in closed form (Kingma & Welling Eq. 10), per example [B]:

        L(x) ~= 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2) + (1/k) sum_i log p(x | z_i).

    Same expectation as :func:`elbo_from_log_weights` but lower variance; used to train the VAE.
    """
    x = x.reshape(x.shape[0], -1)
    mu, log_var = model.encode(x)
    if eps is None:
        eps = torch.randn(k, *mu.shape, dtype=mu.dtype, device=mu.device)
    z = reparameterize(mu, log_var, eps)
    reconstruction = log_bernoulli(x, model.decode(z)).mean(0)
    neg_kl = 0.5 * (1 + log_var - mu**2 - torch.exp(log_var)).sum(-1)
    return neg_kl + reconstruction


def training_loss(model: VAE, x: torch.Tensor, objective: str, k: int) -> torch.Tensor:
    """Minibatch loss = minus the mean bound: ``vae`` -> ELBO (Eq. 10), ``iwae`` -> L_k (Eq. 8)."""
    if objective == "vae":
        return -elbo(model, x, k).mean()
    if objective == "iwae":
        return -iwae_bound(log_weights(model, x, k)).mean()
    raise ValueError(f"objective must be 'vae' or 'iwae', not {objective!r}")


def estimate_log_likelihood(
    model: VAE, x: torch.Tensor, k: int = 5000, chunk: int = 50
) -> torch.Tensor:
    """Per-example estimate of log p(x): the IWAE bound with k samples, ``chunk`` at a time.

    Burda et al. (Sec. 5) report test log-likelihoods with k = 5000.
    """
    with torch.no_grad():
        return importance_sampled_log_likelihood(
            lambda xb, n: log_weights(model, xb, n), x, k, chunk
        )
