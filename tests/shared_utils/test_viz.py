"""shared_utils.viz: grid layout and plots from CSV logs."""

from __future__ import annotations

import torch

from shared_utils import training, viz


def test_image_grid_shapes_and_range():
    grid = viz.image_grid(torch.rand(16, 1, 28, 28), nrow=4, padding=2)
    assert grid.shape == (4 * 30 + 2, 4 * 30 + 2, 3)
    assert grid.min() >= 0 and grid.max() <= 1
    flat = viz.image_grid(torch.rand(4, 784), nrow=2)
    assert flat.shape == (2 * 30 + 2, 2 * 30 + 2, 3)
    shifted = viz.image_grid(torch.full((1, 1, 2, 2), -1.0), nrow=1, padding=0, value_range=(-1, 1))
    assert torch.all(shifted == 0)


def test_save_and_plot(tmp_path):
    out = viz.save_images(torch.rand(4, 1, 8, 8), tmp_path / "g.png", nrow=2)
    assert out.stat().st_size > 0
    log = training.CSVLogger(tmp_path / "log.csv")
    for s in range(5):
        log.log(step=s, loss=1.0 / (s + 1), val=2.0)
    ax = viz.plot_curves(tmp_path / "log.csv", ["loss", "val"])
    assert len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == [0, 1, 2, 3, 4]
