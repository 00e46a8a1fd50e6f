"""Stochastic gradient Langevin dynamics (SGLD) on an energy, and the replay buffer of IGEBM/JEM.

Origin: written for dgm-course (MIT licence).

Langevin dynamics samples p(x) proportional to exp(-E(x)) by following the energy's negative
gradient with added Gaussian noise (IGEBM Eq. 2, JEM Eq. 11):

    x_{k+1} = x_k - (alpha / 2) dE(x_k)/dx + eps_k,    eps_k ~ N(0, alpha I)        (JEM Eq. 11)

which for a small step alpha and many steps draws from exp(-E). Both papers decouple the two
scales in practice: a gradient step ``step_size`` and a noise standard deviation ``noise`` much
smaller than sqrt(2 step_size) (JEM: step 1, noise 0.01; JEM appendix), a biased, low-temperature
sampler that mixes fast enough for training. :func:`sgld` implements the general update

    x_{k+1} = x_k - step_size * dE(x_k)/dx + noise * eps_k,   eps_k ~ N(0, I)

which is Eq. 11 exactly when step_size = alpha / 2 and noise = sqrt(alpha).

Short-run chains only give good samples when they start close to the model's distribution:
IGEBM (Sec. 3.1) and JEM (Sec. 4, appendix) keep a replay buffer of past samples, start each
chain from a buffer entry and, with a small probability rho, from fresh uniform noise instead
(reinitialisation keeps the buffer from collapsing onto a few modes), and write the chains'
ends back into the buffer. :class:`ReplayBuffer` is that buffer; it belongs to the training
state (it is saved and restored with ``--resume``), not to the shipped weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def uniform_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise in [-1, 1] (the model's image range): where fresh SGLD chains start."""
    return 2.0 * torch.rand(shape, generator=generator) - 1.0


def sgld(
    energy: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    steps: int,
    step_size: float,
    noise: float,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] | None = (-1.0, 1.0),
) -> torch.Tensor:
    """``steps`` SGLD steps x <- x - step_size * dE/dx + noise * N(0, I) from ``x`` (JEM Eq. 11
    with decoupled step and noise); returns the chains' ends, detached.

    ``energy`` maps a batch [B, ...] to energies [B]; the gradient of their sum is each chain's
    own gradient. ``bounds`` clips the chains to the image range after each step (as in IGEBM's
    code; ``None``: no clipping). Noise comes from ``generator`` (CPU) and moves to x's device.
    """
    x = x.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(energy(x).sum(), x)[0]
        eps = torch.randn(x.shape, generator=generator).to(x.device)
        x = (x.detach() - step_size * grad + noise * eps).detach()
        if bounds is not None:
            x = x.clamp(*bounds)
    return x


class ReplayBuffer:
    """A fixed-size store of past SGLD samples (IGEBM Sec. 3.1; JEM appendix).

    ``draw(batch, generator)`` returns start points and their buffer indices: each start point
    is a uniformly chosen buffer entry, or with probability ``reinit`` fresh uniform noise;
    ``write_back(indices, samples)`` stores the chains' ends at those indices. The buffer starts
    as uniform noise. ``state_dict``/``load_state_dict`` make it part of a resumable run.
    """

    def __init__(
        self,
        size: int,
        shape: tuple[int, ...],
        reinit: float,
        generator: torch.Generator | None = None,
    ) -> None:
        if size < 1 or not 0.0 <= reinit <= 1.0:
            raise ValueError(f"need size >= 1 and 0 <= reinit <= 1, not {size}, {reinit}")
        self.size, self.shape, self.reinit = size, tuple(shape), reinit
        self.samples = uniform_noise((size, *self.shape), generator)

    def draw(
        self, batch: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(start points [batch, *shape], their buffer indices [batch], the mask [batch] of the
        chains that start from fresh noise)."""
        indices = torch.randint(0, self.size, (batch,), generator=generator)
        fresh = torch.rand(batch, generator=generator) < self.reinit
        noise = uniform_noise((batch, *self.shape), generator)
        start = torch.where(fresh.view(-1, *[1] * len(self.shape)), noise, self.samples[indices])
        return start, indices, fresh

    def write_back(self, indices: torch.Tensor, samples: torch.Tensor) -> None:
        """Store the chains' ends ``samples`` at ``indices`` (the last write wins for an index
        drawn twice)."""
        self.samples[indices] = samples.detach().to(self.samples.device, self.samples.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"samples": self.samples.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        samples = state["samples"]
        if tuple(samples.shape) != (self.size, *self.shape):
            raise ValueError(
                f"buffer of shape {tuple(samples.shape)} does not fit {(self.size, *self.shape)}"
            )
        self.samples = samples.clone()
