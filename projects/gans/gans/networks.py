"""The 28x28 generator and discriminator shared by the three GANs, after the DCGAN guidelines.

Radford et al. (ICLR 2016), Sec. 3: strided convolutions instead of pooling (D downsamples, G
upsamples with transposed convolutions), batch norm in G and D (except G's output layer and D's
input layer), ReLU in G with a tanh output, LeakyReLU(0.2) in D, and no fully connected hidden
layers: G's first layer is a projection of z reshaped to a stack of feature maps, D's last a
single linear read-out. Sized for a CPU (``width`` w = 64, ``z_dim`` = 64):

    G: z -> Linear(z_dim, 2w*7*7) -> BN -> ReLU -> [2w, 7, 7]
         -> ConvT(2w, w, 4, 2, 1) -> BN -> ReLU -> [w, 14, 14]
         -> ConvT(w, 1, 4, 2, 1) -> tanh -> [1, 28, 28]  in [-1, 1]
    D: x [1, 28, 28] -> Conv(1, w, 4, 2, 1) -> LReLU(0.2) -> [w, 14, 14]
         -> Conv(w, 2w, 4, 2, 1) -> [norm] -> LReLU(0.2) -> [2w, 7, 7] -> Linear(2w*7*7, 1)

D's ``norm`` is the architectural difference between the three papers: ``batch`` for DCGAN;
``none`` for the WGAN-GP critic (Gulrajani et al. Sec. 4: no batch norm in the critic, the penalty
is per example); ``spectral`` for SNGAN, which wraps *every* layer of D in spectral normalisation
and has no batch norm (Miyato et al. Sec. 2.1). G is the same for all three.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from gans.sngan import SpectralNorm

NORMS = ("batch", "none", "spectral")


class Generator(nn.Module):
    """G(z): z ~ N(0, I) of dimension ``z_dim`` to a 28x28 grey image in [-1, 1]."""

    def __init__(self, z_dim: int = 64, width: int = 64):
        super().__init__()
        if z_dim < 1 or width < 1:
            raise ValueError(f"z_dim and width must be positive, not {z_dim} and {width}")
        self.z_dim, self.width = z_dim, width
        self.project = nn.Linear(z_dim, 2 * width * 7 * 7, bias=False)  # BN follows: no bias
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # 14x14
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),  # 28x28
            nn.Tanh(),
        )

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (the checkpoint sidecar's ``model``)."""
        return {"z_dim": self.z_dim, "width": self.width}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, z_dim] -> [B, 1, 28, 28] in [-1, 1]."""
        h = self.project(z).view(z.shape[0], 2 * self.width, 7, 7)
        return self.net(h)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors z ~ N(0, I), drawn on the CPU (a CPU generator serves any device)."""
        device = self.project.weight.device
        return torch.randn(n, self.z_dim, generator=generator).to(device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images [n, 1, 28, 28] in [0, 1] (the course's metrics take [0, 1]): (G(z) + 1) / 2.

        Call it in eval mode (``load_model`` returns that): batch norm then uses its running
        statistics, so an image does not depend on the others in the batch.
        """
        return (self.forward(self.sample_z(n, generator)) + 1.0) / 2.0


class Discriminator(nn.Module):
    """D(x): a 28x28 image in [-1, 1] to one real number (a logit for DCGAN, a critic value for
    WGAN-GP, a hinge score for SNGAN), with the normalisation ``norm`` of its paper."""

    def __init__(self, width: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        self.width, self.norm = width, norm
        sn = SpectralNorm if norm == "spectral" else (lambda layer: layer)
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, width, 4, stride=2, padding=1)),  # 14x14; no BN on D's input layer
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=norm != "batch")),  # 7x7
            nn.BatchNorm2d(2 * width) if norm == "batch" else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            sn(nn.Linear(2 * width * 7 * 7, 1)),
        )

    def config(self) -> dict[str, Any]:
        return {"width": self.width, "norm": self.norm}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 28, 28] -> [B, 1]."""
        return self.net(x)


@torch.no_grad()
def draw(G: Generator, n: int, seed: int = 0, chunk: int = 1000) -> torch.Tensor:
    """``n`` samples [n, 1, 28, 28] in [0, 1] of ``G`` (in eval mode) on the CPU, from a generator
    seeded with ``seed``, ``chunk`` at a time: the samples that ``python -m
    shared_utils.sample_quality CHECKPOINT --model gans.networks:Generator`` scores."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([G.sample(min(chunk, n - i), generator).cpu() for i in range(0, n, chunk)])


@torch.no_grad()
def standing_statistics(
    G: Generator, batches: int = 10, batch_size: int = 256, seed: int = 0
) -> Generator:
    """A copy of G in eval mode whose batch-norm statistics are G's own, recomputed on
    ``batches`` x ``batch_size`` fresh z (a seeded generator: the same numbers every time).

    Why: an exponential moving average of G's weights (``--ema-decay``) averages the parameters
    but copies the running statistics of the live G, which were collected with other weights.
    Recomputing them for the averaged weights (the "standing statistics" of Brock et al., ICLR
    2019) makes eval-mode samples those of the averaged generator.
    """
    G = copy.deepcopy(G)
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    G.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        G(G.sample_z(batch_size, generator))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return G.eval()
