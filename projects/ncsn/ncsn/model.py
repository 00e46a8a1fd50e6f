"""The noise conditional score network (NCSN) with its objective and sampler, on 28x28 images.

Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS
2019. The pieces (``score.py``, ``unet.py``):

* noise levels {sigma_i}_{i=1}^L, a geometric sequence from ``sigma_1`` to ``sigma_L`` (Sec. 4.1;
  the paper's images: L = 10, sigma_1 = 1, sigma_10 = 0.01 for pixels in [0, 1]);
* s_theta(x~, sigma_i), a U-Net conditioned on i through its normalisation layers (``unet.py``);
* training by denoising score matching, Eq. 6 with lambda(sigma) = sigma^2: for each image one
  level i ~ Uniform{1..L} and one z ~ N(0, I), x~ = x + sigma_i z, and the loss
  1/2 || sigma_i s_theta(x~, sigma_i) + z ||^2 (the sum over pixels, averaged over the batch), an
  unbiased estimate of L(theta; {sigma_i}) = 1/L sum_i sigma_i^2 l(theta; sigma_i);
* sampling by annealed Langevin dynamics (Algorithm 1) from uniform noise, with step size
  alpha_i = eps sigma_i^2 / sigma_L^2 and T steps per level; the last x is clamped to [0, 1].

The contract of the course's template (``Model`` with ``config``, ``loss``, ``evaluate``,
``sample``; ``ModelConfig``; ``DATASET``; ``METRIC``) is kept, so the commands and plumbing tests
use it unchanged. ``evaluate`` gives the test DSM loss per image, each image at one fixed level
(its row number modulo L), which is cheap and deterministic given the torch seed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from shared_utils.runs import flag

from .score import annealed_langevin, dsm_loss_per_example, geometric_sigmas, perturb
from .unet import ScoreUNet

DATASET = "fashion-mnist"
METRIC = "dsm_loss"
METRIC_LABEL = "test DSM loss (Eq. 6, per image)"
TEST_CONFIG: dict[str, Any] = {"channels": [8, 8, 16], "groups": 4, "T": 2}
IMAGE_SHAPE = (1, 28, 28)


@dataclass
class ModelConfig:
    """The model's hyperparameters: the keyword arguments of :class:`Model`, as training flags."""

    sigma_1: float = flag(1.0, "largest noise level sigma_1 (paper: 1 for pixels in [0, 1])")
    sigma_L: float = flag(0.01, "smallest noise level sigma_L (paper: 0.01)")
    L: int = flag(10, "number of noise levels L (paper: 10)")
    channels: list[int] = flag([32, 64, 64], "U-Net channels at 28, 14 and 7 pixels")
    groups: int = flag(8, "groups of each conditional group norm")
    eps: float = flag(5e-5, "annealed Langevin step constant epsilon (paper: 2e-5 with T = 100)")
    T: int = flag(10, "annealed Langevin steps per noise level (paper: 100)")


class Model(torch.nn.Module):
    """s_theta(x~, sigma_i) = f_theta(x~, i) / sigma_i with the noise levels {sigma_i}."""

    def __init__(
        self,
        sigma_1: float = 1.0,
        sigma_L: float = 0.01,
        L: int = 10,
        channels: list[int] | tuple[int, ...] = (32, 64, 64),
        groups: int = 8,
        eps: float = 5e-5,
        T: int = 10,
    ) -> None:
        super().__init__()
        self._config = {
            "sigma_1": float(sigma_1),
            "sigma_L": float(sigma_L),
            "L": int(L),
            "channels": [int(c) for c in channels],
            "groups": int(groups),
            "eps": float(eps),
            "T": int(T),
        }
        # a buffer that is not saved: rebuilt from the config, never out of step with it
        self.register_buffer(
            "sigmas", geometric_sigmas(sigma_1, sigma_L, L).float(), persistent=False
        )
        self.net = ScoreUNet(L, IMAGE_SHAPE[0], channels, groups)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    @property
    def L(self) -> int:
        return self._config["L"]

    def score(self, x_tilde: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """s_theta(x~, sigma_i) for level indices i [B] (0-based: i = 0 is sigma_1), in x~'s
        dtype (under a bf16 autocast only the network runs in bf16)."""
        sigma = self.sigmas[i].view(-1, *([1] * (x_tilde.dim() - 1)))
        return (self.net(x_tilde, i) / sigma).to(x_tilde.dtype)

    def dsm(self, x: torch.Tensor, i: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """sigma_i^2 l(theta; sigma_i) per example for given levels i and noise z (Eqs. 5-6)."""
        sigma = self.sigmas[i].view(-1, 1, 1, 1)
        x_tilde, _ = perturb(x, sigma, z)
        return dsm_loss_per_example(self.score(x_tilde, i), x_tilde, x, sigma)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The objective of Eq. 6 on a batch of images in [0, 1]: one level i ~ U{1..L} and one
        z ~ N(0, I) per image from the torch RNG (labels unused)."""
        i = torch.randint(0, self.L, (x.shape[0],)).to(x.device)
        z = torch.randn(x.shape).to(x.device)
        return self.dsm(x, i, z).mean()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Test DSM loss per image (Eq. 6's summand), image k of the batch at level k mod L, its
        noise from the torch RNG: averaged over a multiple of L images, an unbiased estimate
        of L(theta; {sigma_i})."""
        i = (torch.arange(x.shape[0]) % self.L).to(x.device)
        z = torch.randn(x.shape).to(x.device)
        return {"dsm_loss": self.dsm(x, i, z)}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        eps: float | None = None,
        T: int | None = None,
        bf16: bool = False,
        chain: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``n`` images [n, 1, 28, 28] in [0, 1] by annealed Langevin dynamics (Algorithm 1)
        from x_0 ~ Uniform[0, 1]^D (as in the authors' code), with the model's ``eps`` and ``T``
        unless given; ``bf16`` runs the network under a bfloat16 autocast (the update itself
        stays in float32). Every random number comes from ``generator``."""
        eps = self._config["eps"] if eps is None else eps
        T = self._config["T"] if T is None else T
        device = self.sigmas.device
        x0 = torch.rand((n, *IMAGE_SHAPE), generator=generator).to(device)
        ctx = torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            x = annealed_langevin(self.score, x0, self.sigmas, eps, T, generator, chain)
        return x.float().clamp(0.0, 1.0)


@torch.no_grad()
def draw(model: Model, n: int, seed: int = 0, chunk: int = 500, **options: Any) -> torch.Tensor:
    """``n`` samples on the CPU, ``chunk`` at a time, all from one generator seeded with
    ``seed``; ``options`` go to :meth:`Model.sample`."""
    generator = torch.Generator().manual_seed(seed)
    out = [model.sample(min(chunk, n - k), generator, **options).cpu() for k in range(0, n, chunk)]
    return torch.cat(out)
