"""2-D toy densities and a small RealNVP for them: the coupling trick where it can be seen.

Three densities on the plane, drawn from a ``torch.Generator`` (same seed, same points):
:func:`two_moons`, :func:`ring_of_gaussians` (8 Gaussians on a circle) and :func:`checkerboard`.
:class:`ToyFlow` stacks ``layers`` affine couplings (RealNVP Eq. 9 with the vector masks
``b = (1, 0)`` and ``(0, 1)`` alternating, so each coordinate is in turn kept and changed) with a
standard normal prior; :func:`fit` trains it by maximum likelihood in a few seconds on a CPU.
:func:`density_grid` evaluates the learned density on a grid for a heat map (:func:`plot_density`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from realnvp.layers import VectorAffineCoupling
from realnvp.model import HALF_LOG_2PI

DENSITIES: dict[str, Callable[..., torch.Tensor]] = {}


def _density(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    DENSITIES[fn.__name__.replace("_", "-")] = fn
    return fn


@_density
def two_moons(
    n: int, generator: torch.Generator | None = None, noise: float = 0.08
) -> torch.Tensor:
    """Two interleaved half circles (as scikit-learn's ``make_moons``), centred and scaled to
    about ``[-2.5, 2.5]``, with Gaussian noise of std ``noise`` (before scaling)."""
    upper = n // 2
    theta = math.pi * torch.rand(n, generator=generator)
    outer = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    inner = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    points = torch.cat([outer[:upper], inner[upper:]])
    points = points + noise * torch.randn(n, 2, generator=generator)
    return 2.0 * (points - torch.tensor([0.5, 0.25]))


@_density
def ring_of_gaussians(
    n: int,
    generator: torch.Generator | None = None,
    k: int = 8,
    radius: float = 2.0,
    std: float = 0.2,
) -> torch.Tensor:
    """A mixture of ``k`` equally weighted Gaussians (std ``std``) centred on a circle."""
    which = torch.randint(0, k, (n,), generator=generator)
    angle = 2 * math.pi * which.float() / k
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return centres + std * torch.randn(n, 2, generator=generator)


@_density
def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the black squares of a 4 x 4 checkerboard on ``[-4, 4]^2`` (the FFJORD paper's
    2-D "checkerboard")."""
    x1 = 4 * torch.rand(n, generator=generator) - 2
    x2 = torch.rand(n, generator=generator) - 2 * torch.randint(0, 2, (n,), generator=generator)
    x2 = x2 + torch.floor(x1) % 2
    return 2 * torch.stack([x1, x2], 1)


class ToyFlow(nn.Module):
    """``layers`` affine couplings on ``R^2`` with alternating masks and MLP ``s``/``t`` networks
    (``hidden`` units, 2 hidden layers); standard normal prior."""

    def __init__(self, layers: int = 8, hidden: int = 64) -> None:
        super().__init__()
        masks = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
        self.layers = nn.ModuleList(
            VectorAffineCoupling(masks[i % 2], hidden) for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x -> (z, log|det dz/dx|)``."""
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(f(x); 0, I) + log|det df/dx|`` (RealNVP Eq. 3)."""
        z, logdet = self(x)
        return (-0.5 * z**2 - HALF_LOG_2PI).sum(1) + logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.inverse(torch.randn(n, 2, generator=generator))


def fit(
    density: str | Callable[..., torch.Tensor],
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 3e-3,
    layers: int = 8,
    hidden: int = 64,
    seed: int = 0,
) -> tuple[ToyFlow, list[float]]:
    """Train a :class:`ToyFlow` on fresh batches of ``density`` (a name of ``DENSITIES`` or a
    sampler ``fn(n, generator)``) by Adam on the mean NLL; returns the flow and the NLL per step."""
    sampler = DENSITIES[density] if isinstance(density, str) else density
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    flow = ToyFlow(layers, hidden)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = -flow.log_prob(sampler(batch_size, gen)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return flow, losses


@torch.no_grad()
def density_grid(
    flow: ToyFlow, lim: float = 4.0, n: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(xs, ys, p)``: the learned density ``p`` on an ``n x n`` grid over ``[-lim, lim]^2``
    (``p[i, j]`` at ``(xs[j], ys[i])``)."""
    xs = torch.linspace(-lim, lim, n)
    ys = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    return xs, ys, flow.log_prob(grid).exp().reshape(n, n)


def plot_density(ax, flow: ToyFlow, lim: float = 4.0, n: int = 200, title: str | None = None):
    """Draw the learned density of ``flow`` as a heat map on the matplotlib axes ``ax``."""
    xs, ys, p = density_grid(flow, lim, n)
    ax.imshow(p.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax
