"""The energy network: a small CNN classifier whose logits define an energy-based model.

Origin: written for dgm-course (MIT licence).

JEM (Grathwohl et al., ICLR 2020, Sec. 3) reads the K logits f_theta(x)[y] of a classifier as
the negative energy of the pair (x, y):

    p_theta(x, y) = exp(f_theta(x)[y]) / Z(theta)                              (JEM Eq. 5)
    p_theta(x)    = sum_y exp(f_theta(x)[y]) / Z(theta)                        (JEM Eq. 6)
    E_theta(x)    = -LogSumExp_y f_theta(x)[y]                                 (JEM Eq. 7)
    p_theta(y|x)  = exp(f_theta(x)[y]) / sum_y' exp(f_theta(x)[y'])            (JEM Eq. 8)

so p(y|x) is the ordinary softmax classifier (Z cancels) and log p(x) = LogSumExp f(x) - log Z
is known up to the constant log Z: enough to rank images (out-of-distribution detection) and to
sample by Langevin dynamics, whose drift -dE/dx does not depend on Z.

With K = 1 the same network is an unconditional EBM as in IGEBM (Du & Mordatch, NeurIPS 2019):
E_theta(x) = -f_theta(x)[0].

The network has no batch normalization: an EBM's energy must be a function of one image, not of
the batch it sits in (batch statistics would also differ between data and SGLD samples). It is
four 3x3 convolutions with SiLU activations (smooth, so that the energy's input gradient that
drives SGLD is smooth too), a global average pool and a linear layer to the K logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shared_utils.runs import flag

from .sgld import sgld, uniform_noise

DATASET = "fashion-mnist"
METRIC = "accuracy"
METRIC_LABEL = "test accuracy"
TEST_CONFIG: dict[str, Any] = {"width": 4}
IMAGE_SHAPE = (1, 28, 28)

# Sampling from the shipped model (``Model.sample``): SGLD from uniform noise with JEM's step
# size and noise (JEM appendix), run for longer than the 20 training steps because a chain from
# noise has no replay buffer to continue from.
SAMPLE_STEPS = 100


@dataclass
class ModelConfig:
    """The network's hyperparameters: the keyword arguments of :class:`Model`, as flags."""

    num_classes: int = flag(10, "K logits: 10 classes for JEM; 1 for an unconditional IGEBM")
    width: int = flag(16, "channels of the first convolution (then 2x, 2x, 4x)")


def to_model_range(x01: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the model's range [-1, 1] (as in JEM's code)."""
    return 2.0 * x01 - 1.0


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """The model's range [-1, 1] -> images in [0, 1] (clipped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


class Model(nn.Module):
    """f_theta: images [B, 1, 28, 28] in [-1, 1] -> K logits [B, K]."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError("num_classes and width must be positive")
        self.num_classes, self.width = num_classes, width
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),  # 28 x 28
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # 14 x 14
            nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),  # 7 x 7
            nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return {"num_classes": self.num_classes, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits f_theta(x) [B, K] of images x in [-1, 1]."""
        return self.net(x)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E_theta(x) = -LogSumExp_y f_theta(x)[y] [B] (JEM Eq. 7; -f(x)[0] when K = 1)."""
        return -torch.logsumexp(self(x), dim=1)

    def log_px_unnormalised(self, x: torch.Tensor) -> torch.Tensor:
        """log p_theta(x) + log Z(theta) = LogSumExp_y f_theta(x)[y] [B] (JEM Eq. 6): the
        out-of-distribution score."""
        return torch.logsumexp(self(x), dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminative part of the objective, -log p_theta(y|x) (JEM Eq. 8, cross-entropy),
        averaged over the batch; the generative part needs SGLD samples (objective.py)."""
        return nn.functional.cross_entropy(self(x), y)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-image test metrics of images x in [-1, 1]: correct (0/1), -log p(y|x), the
        confidence max_y p(y|x) and the unnormalised log p(x)."""
        logits = self(x)
        log_probs = torch.log_softmax(logits, dim=1)
        out = {
            "log_px": torch.logsumexp(logits, dim=1),
            "confidence": log_probs.exp().max(dim=1).values,
        }
        if y is not None:
            out["accuracy"] = (logits.argmax(dim=1) == y).float()
            out["nll_y"] = -log_probs.gather(1, y[:, None])[:, 0]
        return out

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        steps: int = SAMPLE_STEPS,
        step_size: float | None = None,
        noise: float | None = None,
    ) -> torch.Tensor:
        """``n`` images [n, 1, 28, 28] in [0, 1]: ``steps`` SGLD steps on E_theta from uniform
        noise (JEM's step size and noise unless given)."""
        from .objective import JEM_SGLD_NOISE, JEM_SGLD_STEP_SIZE

        device = next(self.parameters()).device
        x0 = uniform_noise((n, *IMAGE_SHAPE), generator).to(device)
        x = sgld(
            self.energy,
            x0,
            steps,
            JEM_SGLD_STEP_SIZE if step_size is None else step_size,
            JEM_SGLD_NOISE if noise is None else noise,
            generator,
        )
        return to_image_range(x)
