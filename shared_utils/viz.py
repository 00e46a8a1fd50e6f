"""Plots used across projects: image grids and training curves.

Origin: written for dgm-course (MIT licence); grids are made with torchvision.utils.make_grid
(BSD-3-Clause, a dependency) and drawn with matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and "ipykernel" not in __import__("sys").modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from shared_utils.training import read_csv_log  # noqa: E402


def image_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, value_range=(0.0, 1.0)
) -> torch.Tensor:
    """``[N, C, H, W]`` (or ``[N, H, W]``, or flat ``[N, 784]``) -> one ``[H', W', C]`` image in [0, 1]."""
    images = images.detach().float().cpu()
    if images.dim() == 2:
        side = int(round(images.shape[1] ** 0.5))
        images = images.view(-1, 1, side, side)
    elif images.dim() == 3:
        images = images.unsqueeze(1)
    lo, hi = value_range
    images = ((images - lo) / (hi - lo)).clamp(0, 1)
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)
    return grid.permute(1, 2, 0)


def show_images(
    images: torch.Tensor,
    nrow: int = 8,
    title: str | None = None,
    ax: plt.Axes | None = None,
    value_range=(0.0, 1.0),
    size: float = 4.0,
) -> plt.Axes:
    """Draw an image grid on ``ax`` (a new figure if None) and return the axes."""
    grid = image_grid(images, nrow=nrow, value_range=value_range)
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def save_images(
    images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, value_range=(0.0, 1.0)
) -> Path:
    """Write an image grid as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, nrow=nrow, value_range=value_range)
    plt.imsave(
        path,
        grid.squeeze(-1).numpy() if grid.shape[-1] == 1 else grid.numpy(),
        cmap="gray",
        vmin=0,
        vmax=1,
    )
    return path


def plot_curves(
    log: str | os.PathLike | Sequence[dict[str, float]],
    y: str | Sequence[str],
    x: str = "step",
    ax: plt.Axes | None = None,
    title: str | None = None,
    logy: bool = False,
) -> plt.Axes:
    """Plot one or more columns of a CSV log (path or rows from ``read_csv_log``) against ``x``."""
    rows = read_csv_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
    ys = [y] if isinstance(y, str) else list(y)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name in ys:
        pts = [(r[x], r[name]) for r in rows if isinstance(r.get(name), float)]
        if pts:
            xs, vs = zip(*pts, strict=True)
            ax.plot(xs, vs, label=name)
    ax.set_xlabel(x)
    if logy:
        ax.set_yscale("log")
    if len(ys) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax
