"""WGAN-GP: the Wasserstein GAN critic with a gradient penalty (Gulrajani et al., NeurIPS 2017).

The critic D estimates the Wasserstein-1 distance through the Kantorovich-Rubinstein duality,
W(P_r, P_g) = sup_{||D||_L <= 1} E_{x ~ P_r}[D(x)] - E_{x~ ~ P_g}[D(x~)]. Instead of clipping
weights, the 1-Lipschitz constraint is enforced softly on the gradient norm at points x^ sampled
uniformly on straight lines between pairs of real and generated images (Eq. 3, Algorithm 1):

    L = E_{x~ ~ P_g}[D(x~)] - E_{x ~ P_r}[D(x)] + lambda E_{x^ ~ P_x^}[(||grad_x^ D(x^)||_2 - 1)^2]
    x^ = eps x + (1 - eps) x~,    eps ~ U[0, 1], one per example

and the generator minimises -E_z[D(G(z))]. The critic has no batch norm (Sec. 4: it would make
the penalty, which is per example, depend on the other examples of the batch). The negative of
the critic's loss without the penalty, E[D(x)] - E[D(x~)], is the Wasserstein estimate that the
paper shows to be a meaningful training curve: it falls as the samples improve.

Hyperparameters (Algorithm 1): lambda = 10, n_critic = 5 critic updates per generator update,
Adam with alpha = 1e-4, beta1 = 0, beta2 = 0.9, batch size m = 64. (The authors' MNIST script,
gan_mnist.py of their code release, uses beta1 = 0.5 and a generator without batch norm; here the
generator is the one shared by the three GANs and beta1 is a flag.)
"""

from __future__ import annotations

import torch
from torch import nn

ADAM = {"lr": 1e-4, "betas": (0.0, 0.9)}  # Gulrajani et al. Algorithm 1
N_CRITIC = 5
LAMBDA = 10.0


def interpolates(
    real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x^ = eps x + (1 - eps) x~ with eps ~ U[0, 1] drawn once per example (Algorithm 1)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator).to(real.device)  # CPU generator, any device
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """E_{x^}[(||grad_x^ D(x^)||_2 - 1)^2] (the penalty of Eq. 3, without lambda).

    The gradient is taken with ``create_graph=True`` so that the penalty can itself be
    differentiated with respect to D's parameters (a second-order backward pass).
    """
    x_hat = interpolates(real.detach(), fake.detach(), generator).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)  # per-example ||grad_x^ D(x^)||_2
    return ((norm - 1.0) ** 2).mean()


def discriminator_loss(
    D: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = LAMBDA,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's loss L of Eq. 3; and for the log the Wasserstein estimate E[D(x)] - E[D(x~)]
    and the (unweighted) gradient penalty."""
    wasserstein = D(real).mean() - D(fake).mean()
    penalty = gradient_penalty(D, real, fake, generator)
    loss = -wasserstein + lambda_gp * penalty
    return loss, {"wasserstein": wasserstein.detach(), "gradient_penalty": penalty.detach()}


def generator_loss(D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """-E_z[D(G(z))], the generator's update of Algorithm 1."""
    return -D(fake).mean()
