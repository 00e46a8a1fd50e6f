"""The IWAE paper's one-stochastic-layer MNIST model (Burda et al., 2016, Sec. 5).

Generative model p(x, z) = p(z) p(x | z):
    p(z) = N(0, I),  z in R^d (d = 50; d = 2 for the manifold plot),
    p(x | z) = prod_j Bernoulli(x_j; sigmoid(logits_j)),  logits = decoder(z): d-200-200-784, tanh.
Recognition model (encoder):
    q(z | x) = N(mu(x), diag(exp(log_var(x)))),  encoder: 784-200-200-(d means, d log-variances).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

X_DIM = 784


class VAE(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) of the paper's 1-stochastic-layer MNIST architecture."""

    def __init__(self, latent_dim: int = 50, hidden_dim: int = 200, x_dim: int = X_DIM):
        super().__init__()
        self.latent_dim, self.hidden_dim, self.x_dim = latent_dim, hidden_dim, x_dim
        self.encoder = nn.Sequential(
            nn.Linear(x_dim, hidden_dim),
            nn.Tanh(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.Tanh(),
            nn.Linear(hidden_dim, 2 * latent_dim),  # [mu, log sigma^2]
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            nn.Tanh(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.Tanh(),
            nn.Linear(hidden_dim, x_dim),  # Bernoulli logits
        )

    def config(self) -> dict[str, Any]:
        """What :func:`build_model` needs to rebuild this network (kept in sidecars)."""
        return {"latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim, "x_dim": self.x_dim}

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        """Set the decoder's output bias to logit(mean training pixel), common practice.

        An untrained decoder then already predicts the average digit, so the first epochs are not
        spent learning the background.
        """
        p = pixel_mean.reshape(-1).float().clamp(eps, 1 - eps)
        self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 784] (or [B, 1, 28, 28]) -> (mu, log_var) of q(z|x), each [B, d]."""
        h = self.encoder(x.reshape(x.shape[0], -1))
        mu, log_var = h.chunk(2, dim=-1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., d] -> Bernoulli logits [..., 784] of p(x|z)."""
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means (pixel probabilities) for z ~ p(z) = N(0, I): [n, 1, 28, 28]."""
        z = torch.randn(n, self.latent_dim, generator=generator)
        return torch.sigmoid(self.decode(z)).view(n, 1, 28, 28)


def build_model(config: dict[str, Any]) -> VAE:
    """A fresh :class:`VAE` from a checkpoint's ``config`` (extra keys are ignored)."""
    return VAE(
        latent_dim=int(config.get("latent_dim", 50)),
        hidden_dim=int(config.get("hidden_dim", 200)),
        x_dim=int(config.get("x_dim", X_DIM)),
    )
