"""Glow: a multi-scale flow of L levels of K steps (Kingma & Dhariwal 2018, Sec. 3, Fig. 2).

For a 1 x 28 x 28 image and L = 2 (the default; ``levels``):

    x [1, 28, 28] -> squeeze -> [4, 14, 14] -> K steps of flow -> split: z_1 = eps [2, 14, 14]
                  -> squeeze of the kept half [2, 14, 14] -> [8, 7, 7] -> K steps -> z_2 [8, 7, 7]

(7 is odd, so 28 x 28 allows at most two levels.) A step of flow is actnorm -> invertible 1x1
convolution -> coupling layer (``layers.FlowStep``). Every latent of :meth:`Glow.encode` has a
standard normal prior: the split's learned conditional Gaussian p(z2 | z1) and the top latent's
learned Gaussian N(mean, exp(logs)^2) (the official code's ``--learntop``, used in all its
likelihood runs) are folded into the flow as affine maps (``layers.Split``,
``layers.LearnedPrior``).

**Log-likelihood** (change of variables, Sec. 2 of the paper): log p(x) = sum_i log N(z_i; 0, I)
+ sum over layers of log|det dh_l / dh_{l-1}|.

**Data and bits per dimension** (Sec. 2; the official code's ``preprocess``, n_bits = 8):
an image of integers k in {0, ..., 255} becomes y = k / 256 + u - 1/2 with u ~ U(0, 1/256) per
pixel (uniform dequantization into [-1/2, 1/2)). Each bin of the discrete data has width 1/256 in
y, so log P(k) >= E_u[log p(y)] - D log 256, and the bits per dimension of the discrete data are

    bpd = -(log p(y) - D log 256) / (D ln 2),    D = 784,

(``shared_utils.metrics.dequantized_nll_to_discrete_bpd``), the number that the paper, and FFJORD's
Table 2 for Glow on MNIST (1.05), report: an upper bound on the discrete NLL in bits per pixel.

**Temperature** (Sec. 5, Fig. 8): sampling draws every latent from N(0, T^2 I); T = 0 decodes
the all-zero latents (the mode of every prior, mapped through the flow).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from glow.layers import (
    COUPLINGS,
    PERMUTATIONS,
    ActNorm,
    FlowStep,
    LearnedPrior,
    Split,
    Squeeze,
    standard_normal_log_prob,
)
from shared_utils.metrics import dequantized_nll_to_discrete_bpd

N_BINS = 256  # 2 ** n_bits, n_bits = 8: MNIST's grey levels are used at full depth


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 pixels k -> y = k / 256 + U(0, 1/256) - 1/2 in [-1/2, 1/2) (float32), the noise drawn
    from ``generator`` (on its device; the result is on that device)."""
    device = generator.device if generator is not None else images.device
    noise = torch.rand(images.shape, generator=generator, device=device)
    return (images.to(device).float() + noise) / N_BINS - 0.5


def bin_centres(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels k -> the centre of their bin, (k + 1/2) / 256 - 1/2: a deterministic input
    for encoding (interpolation, latent arithmetic)."""
    return (images.float() + 0.5) / N_BINS - 0.5


def to_images(x: torch.Tensor) -> torch.Tensor:
    """Model space [-1/2, 1/2] -> images in [0, 1] (clamped), e.g. for ``shared_utils.viz``."""
    return (x + 0.5).clamp(0.0, 1.0)


def bits_per_dim(log_prob: torch.Tensor, num_dims: int) -> torch.Tensor:
    """log p(y) of dequantized data in [-1/2, 1/2)^D (nats) -> bits/dim of the 8-bit data:
    -(log p(y) - D log 256) / (D ln 2). A uniform density on the cube (log p = 0) gives 8."""
    return dequantized_nll_to_discrete_bpd(-log_prob, num_dims, N_BINS)


class Glow(nn.Module):
    """Glow for ``in_channels x image_size x image_size`` images.

    ``levels`` (L) levels of ``steps`` (K) steps of flow, each coupling's NN() with ``hidden``
    channels (the paper: K = 32, 512 channels, L = 3 for 32x32 images; this CPU-sized default:
    K = 8, 64 channels, L = 2). ``permutation``: the 1x1 convolution's parameterisation, ``lu``
    (Eq. 10) or ``plain`` (a free W). ``coupling``: ``affine`` or ``additive``. Takes inputs in
    [-1/2, 1/2] (:func:`dequantize`).
    """

    def __init__(
        self,
        levels: int = 2,
        steps: int = 8,
        hidden: int = 64,
        permutation: str = "lu",
        coupling: str = "affine",
        in_channels: int = 1,
        image_size: int = 28,
    ):
        super().__init__()
        if levels < 1 or steps < 1 or hidden < 1 or in_channels < 1:
            raise ValueError("levels, steps, hidden and in_channels must be positive")
        if image_size % (2**levels):
            raise ValueError(
                f"{levels} levels squeeze the image {levels} times: its size {image_size} must be "
                f"divisible by {2**levels} (28 x 28 allows at most 2 levels)"
            )
        if permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, not {permutation!r}")
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, not {coupling!r}")
        self._config = {
            "levels": levels,
            "steps": steps,
            "hidden": hidden,
            "permutation": permutation,
            "coupling": coupling,
            "in_channels": in_channels,
            "image_size": image_size,
        }
        self.input_shape = (in_channels, image_size, image_size)
        self.num_dims = in_channels * image_size * image_size
        self.squeeze = Squeeze()
        self.flows = nn.ModuleList()
        self.splits = nn.ModuleList()
        shapes: list[tuple[int, int, int]] = []
        c, s = in_channels, image_size
        for level in range(levels):
            c, s = 4 * c, s // 2
            self.flows.append(
                nn.ModuleList(FlowStep(c, hidden, permutation, coupling) for _ in range(steps))
            )
            if level < levels - 1:
                self.splits.append(Split(c))
                shapes.append((c - c // 2, s, s))
                c = c // 2
        self.top_prior = LearnedPrior(c)
        shapes.append((c, s, s))
        self.latent_shapes = shapes  # of encode(x)'s latents, factored-out ones first, top last

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (the checkpoint sidecar's ``model``)."""
        return dict(self._config)

    # -- the flow -------------------------------------------------------------------------------

    def flow(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x -> (the multi-scale latents, sum of the log-determinants ``[B]``)."""
        logdet = x.new_zeros(x.shape[0])
        zs = []
        h = x
        for level, steps in enumerate(self.flows):
            h, _ = self.squeeze(h)
            for step in steps:
                h, ld = step(h)
                logdet = logdet + ld
            if level < len(self.splits):
                y, ld = self.splits[level](h)
                logdet = logdet + ld
                keep = self.splits[level].c_keep
                zs.append(y[:, keep:])
                h = y[:, :keep]
        eps, ld = self.top_prior(h)
        zs.append(eps)
        return zs, logdet + ld

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x ``[B, C, H, W]`` -> the list of latents (shapes :attr:`latent_shapes`), each with a
        standard normal prior."""
        return self.flow(x)[0]

    def decode(self, zs: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The inverse of :meth:`encode`: latents -> x."""
        if len(zs) != len(self.latent_shapes):
            raise ValueError(f"expected {len(self.latent_shapes)} latents, got {len(zs)}")
        h = self.top_prior.inverse(zs[-1])
        for level in reversed(range(len(self.flows))):
            if level < len(self.splits):
                h = self.splits[level].inverse(torch.cat([h, zs[level]], 1))
            for step in reversed(self.flows[level]):
                h = step.inverse(h)
            h = self.squeeze.inverse(h)
        return h

    # -- likelihood -----------------------------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats of each example, ``[B]`` (change of variables)."""
        zs, logdet = self.flow(x)
        return sum(standard_normal_log_prob(z) for z in zs) + logdet

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Bits/dim of the 8-bit images whose dequantized versions are ``x``, ``[B]``."""
        return bits_per_dim(self.log_prob(x), self.num_dims)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The training objective: mean bits/dim of the minibatch (the official code's too)."""
        return self.bits_per_dim(x).mean()

    # -- actnorm initialisation -----------------------------------------------------------------

    def actnorms(self) -> list[ActNorm]:
        """Every ActNorm layer, the flow's and those inside the couplings' NN()."""
        return [m for m in self.modules() if isinstance(m, ActNorm)]

    @property
    def initialized(self) -> bool:
        """Whether every ActNorm has had its data-dependent initialisation."""
        return all(bool(m.initialized.item()) for m in self.actnorms())

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """ActNorm's data-dependent initialisation (Sec. 3.1) on the batch ``x``: one forward pass
        in training mode, each uninitialised ActNorm initialised on its own input in turn."""
        was_training = self.training
        self.train()
        try:
            self.flow(x)
        finally:
            self.train(was_training)

    # -- sampling -------------------------------------------------------------------------------

    def sample_latents(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """``n`` draws of every latent from N(0, T^2 I), T = ``temperature``."""
        device = next(self.parameters()).device
        noise_device = generator.device if generator is not None else device
        return [
            temperature
            * torch.randn(n, *shape, generator=generator, device=noise_device).to(device)
            for shape in self.latent_shapes
        ]

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` images in [0, 1], ``[n, C, H, W]``, at temperature ``temperature`` (Sec. 5:
        the paper's samples use T = 0.7; T = 1 is the model's distribution)."""
        return to_images(self.decode(self.sample_latents(n, temperature, generator)))
