"""The paper's algorithm: noise levels, denoising score matching and (annealed) Langevin dynamics.

Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS
2019 (arXiv:1907.05600). Notation as in the paper:

* {sigma_i}_{i=1}^L: a geometric sequence of noise levels, sigma_1 > ... > sigma_L, with
  sigma_1 / sigma_2 = ... = sigma_{L-1} / sigma_L (Sec. 4.1);
* s_theta(x~, sigma): the noise conditional score network, trained so that
  s_theta(x~, sigma) ~ grad_x~ log q_sigma(x~), q_sigma(x~) = int p_data(x) N(x~ | x, sigma^2 I) dx;
* the denoising score matching objective at one noise level (Eq. 5)

      l(theta; sigma) = 1/2 E_{p_data(x)} E_{x~ ~ N(x, sigma^2 I)} || s_theta(x~, sigma) + (x~ - x) / sigma^2 ||_2^2,

  and the joint objective over all levels (Eq. 6)

      L(theta; {sigma_i}) = 1/L sum_i lambda(sigma_i) l(theta; sigma_i),  lambda(sigma) = sigma^2,

  so that every term has the same order of magnitude (||sigma s_theta||_2 ~ 1);
* Langevin dynamics (Eq. 4): x_t = x_{t-1} + eps/2 grad_x log p(x_{t-1}) + sqrt(eps) z_t;
* annealed Langevin dynamics (Algorithm 1): T steps of Eq. 4 at each level, step size
  alpha_i = eps * sigma_i^2 / sigma_L^2, the last sample of level i starting level i + 1.

Everything here works on tensors of any shape [B, ...] and takes the score as a function, so the
same code samples the 2-D toy (``toy.py``, with exact or learned scores) and images
(``model.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# score(x, i) -> grad_x log q_{sigma_i}(x) estimate; i is a LongTensor [B] of level indices 0..L-1
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def geometric_sigmas(sigma_1: float, sigma_L: float, L: int) -> torch.Tensor:
    """sigma_1 > ... > sigma_L with a constant ratio sigma_{i-1} / sigma_i (Sec. 4.1); float64."""
    if L < 1 or not sigma_1 >= sigma_L > 0:
        raise ValueError(f"need L >= 1 and sigma_1 >= sigma_L > 0, got {sigma_1}, {sigma_L}, {L}")
    if L == 1:
        return torch.tensor([float(sigma_1)], dtype=torch.float64)
    k = torch.arange(L, dtype=torch.float64)
    return sigma_1 * (sigma_L / sigma_1) ** (k / (L - 1))


def perturb(
    x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x~ = x + sigma z and the score of the perturbation kernel at x~,
    grad_x~ log N(x~ | x, sigma^2 I) = -(x~ - x) / sigma^2 = -z / sigma (the target of Eq. 5).
    ``sigma`` broadcasts against x ([B, 1, ...] or a scalar)."""
    x_tilde = x + sigma * noise
    return x_tilde, -noise / sigma


def dsm_loss_per_example(
    score: torch.Tensor, x_tilde: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """lambda(sigma) l(theta; sigma) for one draw per example (Eqs. 5 and 6, lambda = sigma^2):
    1/2 sigma^2 || s + (x~ - x) / sigma^2 ||^2 summed over the dimensions, shape [B]."""
    target = -(x_tilde - x) / sigma**2
    return 0.5 * (sigma**2 * (score - target).pow(2)).flatten(1).sum(1)


def langevin(
    score: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    eps: float,
    T: int,
    generator: torch.Generator | None = None,
    chain: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """T steps of Langevin dynamics (Eq. 4) from x0 with step size eps and score(x) =
    grad_x log p(x): x_t = x_{t-1} + eps/2 score(x_{t-1}) + sqrt(eps) z_t. For eps -> 0 and
    T -> infinity x_T is exactly distributed as p (under regularity conditions)."""
    x = x0.clone()
    for _ in range(T):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x + 0.5 * eps * score(x) + eps**0.5 * z
        if chain is not None:
            chain.append(x.detach().cpu())
    return x


def step_sizes(sigmas: torch.Tensor, eps: float) -> torch.Tensor:
    """alpha_i = eps * sigma_i^2 / sigma_L^2 (Algorithm 1, line 3): the signal-to-noise ratio
    alpha_i s_theta / (2 sqrt(alpha_i) z) is then the same at every level."""
    return eps * sigmas.double() ** 2 / sigmas.double()[-1] ** 2


def annealed_langevin(
    score: ScoreFn,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    eps: float,
    T: int,
    generator: torch.Generator | None = None,
    chain: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Algorithm 1): for i = 1..L, T steps of
    x_t = x_{t-1} + alpha_i/2 s_theta(x_{t-1}, sigma_i) + sqrt(alpha_i) z_t with
    alpha_i = eps sigma_i^2 / sigma_L^2, starting level i+1 from the last x of level i.
    ``score(x, i)`` gets the level index i (0-based) as a LongTensor [B]. Random numbers come
    from ``generator`` (CPU), so the samples do not depend on the device. ``chain`` (a list)
    receives x after every level."""
    x = x0.clone()
    alphas = step_sizes(sigmas, eps)
    for i, alpha in enumerate(alphas.tolist()):
        level = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        for _ in range(T):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + 0.5 * alpha * score(x, level) + alpha**0.5 * z  # Algorithm 1, line 6
        if chain is not None:
            chain.append(x.detach().cpu())
    return x
