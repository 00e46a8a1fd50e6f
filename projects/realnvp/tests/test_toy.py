"""The 2-D toy densities and the toy RealNVP: shapes, a normalised density, learning two moons."""

from __future__ import annotations

import pytest
import torch
from realnvp.checks import jacobian_logdet, randomize
from realnvp.toy import DENSITIES, ToyFlow, density_grid, fit

torch.set_num_threads(1)  # the course machine's cores are shared


@pytest.mark.parametrize("name", DENSITIES)
def test_toy_densities_are_seeded_2d_points(name):
    a = DENSITIES[name](500, torch.Generator().manual_seed(0))
    b = DENSITIES[name](500, torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b) and a.abs().max() < 5


def test_toy_flow_is_invertible_with_the_right_logdet():
    flow = randomize(ToyFlow(layers=4, hidden=8), scale=0.5)
    x = torch.randn(6, 2, dtype=torch.float64)
    z, logdet = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(logdet[0], jacobian_logdet(lambda v: flow(v)[0], x[:1]))


def test_toy_density_integrates_to_one():
    flow = randomize(ToyFlow(layers=4, hidden=8), scale=0.3).float()
    xs, ys, p = density_grid(flow, lim=7.0, n=300)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs((p.sum() * cell).item() - 1.0) < 0.02


def test_toy_flow_learns_two_moons():
    flow, losses = fit("two-moons", steps=150, batch_size=128, layers=4, hidden=32, seed=0)
    held_out = DENSITIES["two-moons"](2000, torch.Generator().manual_seed(123))
    with torch.no_grad():
        nll = -flow.log_prob(held_out).mean().item()
        untrained = -ToyFlow(layers=4, hidden=32).log_prob(held_out).mean().item()
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5, losses[::10]
    assert nll < untrained - 0.5, (nll, untrained)
    samples = flow.sample(100, torch.Generator().manual_seed(0))
    assert samples.shape == (100, 2) and torch.isfinite(samples).all()
