"""Independent-pixel Bernoulli model of binarized images: the skeleton's placeholder model.

Origin: written for dgm-course (MIT licence).

TODO: replace with the paper's model; keep its equations next to the code, numbered as in the paper.

The model treats the D pixels of an image as independent coins,

    p_theta(x) = prod_i Bernoulli(x_i; sigma(theta_i))                                   (1)
    -log p_theta(x) = -sum_i [x_i log sigma(theta_i) + (1 - x_i) log(1 - sigma(theta_i))]  (2)

and its maximum-likelihood fit is the mean of each pixel, sigma(theta_i) = E[x_i]        (3).
It is a useful baseline: any model of the paper should beat its NLL by a wide margin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IMAGE_SHAPE = (1, 28, 28)


class IndependentBernoulli(torch.nn.Module):
    """One logit theta_i per pixel (eq. 1)."""

    def __init__(self, num_pixels: int = 784) -> None:
        super().__init__()
        self.num_pixels = num_pixels
        self.logits = torch.nn.Parameter(torch.zeros(num_pixels))

    def config(self) -> dict[str, Any]:
        """What rebuilds the model: stored in the checkpoint's sidecar."""
        return {"num_pixels": self.num_pixels}

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) in nats per image (eq. 2); ``x`` is [B, ...] in {0, 1}, returns [B]."""
        x = x.reshape(x.shape[0], -1)
        logits = self.logits.expand_as(x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images [n, 1, 28, 28] drawn from eq. 1."""
        probs = torch.sigmoid(self.logits).expand(n, -1)
        x = torch.bernoulli(probs, generator=generator)
        return x.reshape(n, *IMAGE_SHAPE) if self.num_pixels == 784 else x

    @classmethod
    def fit(cls, pixel_probs: torch.Tensor, eps: float = 1e-3) -> IndependentBernoulli:
        """The closed-form maximum-likelihood model (eq. 3) from images in [0, 1].

        For dynamically binarized data, E[x_i] is the mean grey level of pixel i; ``eps`` keeps
        the logits finite for pixels that are always 0.
        """
        mean = pixel_probs.reshape(pixel_probs.shape[0], -1).double().mean(dim=0)
        model = cls(num_pixels=mean.numel())
        with torch.no_grad():
            model.logits.copy_(torch.logit(mean.clamp(eps, 1 - eps)).float())
        return model
