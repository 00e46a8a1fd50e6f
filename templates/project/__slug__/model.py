"""The model and its training objective: the one file to replace with the paper's.

Origin: written for dgm-course (MIT licence).

TODO: replace the placeholder below with the paper's model and objective; keep its equations next
to the code, numbered as in the paper.

The contract. train.py, evaluate.py, sample.py, bench.py, tests/test_plumbing.py and the
notebook's plumbing cells use only these names, so any model family that provides them (a flow, a
VAE, an autoregressive model, a GAN, a diffusion model) runs through them unchanged:

* ``ModelConfig``: a dataclass of the model's hyperparameters, each a ``flag`` (so each is a
  training option: ``hidden_dim`` -> ``--hidden-dim``). Its fields are exactly the keyword
  arguments of ``Model``, with the same defaults.
* ``Model(nn.Module)``, built as ``Model(**config)`` with JSON-able keyword arguments only:
    - ``config() -> dict``: those keyword arguments (stored in the checkpoint's sidecar, which
      ``shared_utils.checkpoints.load_model`` rebuilds with ``Model(**sidecar["model"])``);
    - ``loss(x, y=None) -> Tensor[]``: the training objective, a scalar that is minimised, on a
      batch ``x`` [B, 1, 28, 28] as ``shared_utils.data.model_inputs`` gives it (labels ``y`` [B]
      for a conditional model; ignore them otherwise);
    - ``evaluate(x, y=None) -> dict[str, Tensor[B]]``: per-example metrics of a test batch (run
      under ``torch.no_grad()`` in eval mode), e.g. ``{"nll_nats": ...}``; the evaluate command
      and the end-of-epoch evaluation average them. A model without a likelihood returns what it
      has per example (a GAN: e.g. its discriminator's score of the test images);
    - ``sample(n, generator=None) -> Tensor[n, 1, 28, 28]``: ``n`` images in [0, 1], drawing every
      random number from ``generator`` when one is given (same generator state, same images).
* ``DATASET``: the default ``--dataset``, a key of ``shared_utils.data.DATASETS``.
* ``METRIC``, ``METRIC_LABEL``: the key of ``evaluate()``'s dict shown in the README's results
  table and checked by the notebook (the paper's metric), and how it reads there.
* ``TEST_CONFIG``: keyword arguments of a small, fast model for the plumbing tests ({} = defaults).

A model with several networks (a GAN's generator and discriminator) keeps them all as submodules
of ``Model`` so that one checkpoint holds them; its training step extends train.py (see there).

The placeholder: an independent-pixel Bernoulli model of binarized images. It treats the D pixels
of an image as independent coins,

    p_theta(x) = prod_i Bernoulli(x_i; sigma(theta_i))                                   (1)
    -log p_theta(x) = -sum_i [x_i log sigma(theta_i) + (1 - x_i) log(1 - sigma(theta_i))]  (2)

and its maximum-likelihood fit is the mean of each pixel, sigma(theta_i) = E[x_i]        (3).
It is a useful baseline: any model of the paper should beat its NLL by a wide margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from shared_utils.metrics import nats_to_bits_per_dim
from shared_utils.runs import flag

DATASET = "mnist-binarized"
METRIC = "nll_nats"
METRIC_LABEL = "test NLL (nats)"
TEST_CONFIG: dict[str, Any] = {}
IMAGE_SHAPE = (1, 28, 28)


@dataclass
class ModelConfig:
    """The model's hyperparameters: the keyword arguments of :class:`Model`, as training flags."""

    num_pixels: int = flag(784, "pixels per image: 784 = 28 x 28 (fewer only in unit tests)")


class Model(torch.nn.Module):
    """One logit theta_i per pixel (eq. 1)."""

    def __init__(self, num_pixels: int = 784) -> None:
        super().__init__()
        self.num_pixels = num_pixels
        self.logits = torch.nn.Parameter(torch.zeros(num_pixels))

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return {"num_pixels": self.num_pixels}

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) in nats per image (eq. 2); ``x`` is [B, ...] in {0, 1}, returns [B]."""
        x = x.reshape(x.shape[0], -1)
        logits = self.logits.expand_as(x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective: eq. 2 averaged over the batch (maximum likelihood)."""
        return self.nll(x).mean()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Exact test NLL per image (eq. 2), in nats and in bits per dimension."""
        nll = self.nll(x)
        return {"nll_nats": nll, "bits_per_dim": nats_to_bits_per_dim(nll, self.num_pixels)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images [n, 1, 28, 28] drawn from eq. 1 ([n, num_pixels] unless 784 pixels)."""
        probs = torch.sigmoid(self.logits).expand(n, -1)
        x = torch.bernoulli(probs, generator=generator)
        return x.reshape(n, *IMAGE_SHAPE) if self.num_pixels == 784 else x

    @classmethod
    def fit(cls, pixel_probs: torch.Tensor, eps: float = 1e-3) -> Model:
        """The closed-form maximum-likelihood model (eq. 3) from images in [0, 1].

        For dynamically binarized data, E[x_i] is the mean grey level of pixel i; ``eps`` keeps
        the logits finite for pixels that are always 0.
        """
        mean = pixel_probs.reshape(pixel_probs.shape[0], -1).double().mean(dim=0)
        model = cls(num_pixels=mean.numel())
        with torch.no_grad():
            model.logits.copy_(torch.logit(mean.clamp(eps, 1 - eps)).float())
        return model
