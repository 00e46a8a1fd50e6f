"""Numerical checks of flows, used by the tests and the notebook.

:func:`jacobian_logdet` computes ``log|det J|`` of any map from its full Jacobian (autograd, then
``slogdet``): the brute-force ``O(D^3)`` answer that a coupling layer's triangular Jacobian gives
in ``O(D)``. :func:`randomize` gives a module random weights (a fresh coupling is the identity, so
checks on it would prove little).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def randomize(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """``module`` in float64 with every parameter drawn from ``N(0, scale^2)`` (seeded)."""
    module.double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return module


def jacobian_logdet(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``log|det d fn(x) / dx|`` for one example ``x`` (``[1, ...]``), from the full Jacobian of
    ``fn`` (whose output must have as many entries as ``x``) by autograd."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        return fn(v.view_as(x)).flatten()

    jac = torch.autograd.functional.jacobian(flat, x.flatten())
    sign, logabsdet = torch.linalg.slogdet(jac)
    if sign == 0:
        raise ValueError("the Jacobian is singular")
    return logabsdet
