"""Dequantization, the logit transform and the bits/dim bookkeeping, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
from realnvp.preprocess import (
    bits_per_dim,
    dequantization_noise,
    dequantize,
    inverse_logit_transform,
    logit_transform,
)

torch.set_num_threads(1)  # the course machine's cores are shared


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 0.05])
def test_logit_transform_inverse_and_log_jacobian(alpha):
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x.clamp(1e-3, 1 - 1e-3).requires_grad_(True)
    y, logdet = logit_transform(x, alpha)
    torch.testing.assert_close(inverse_logit_transform(y, alpha), x, atol=1e-10, rtol=0)
    # elementwise map: the Jacobian is diagonal, its entries are d y_i / d x_i
    (diag,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(logdet, diag.abs().log().flatten(1).sum(1))
    s = alpha + (1 - 2 * alpha) * x  # and by hand: log(1 - 2 alpha) - log s - log(1 - s)
    by_hand = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).flatten(1).sum(1)
    torch.testing.assert_close(logdet, by_hand)


def test_uniform_density_on_the_unit_cube_is_exactly_8_bits_per_dim():
    """p_x = 1 on [0,1]^D, i.e. p_y(y) = 1 / |dy/dx| in logit space: log p_y = -logdet."""
    x = dequantize(torch.randint(0, 256, (5, 1, 3, 3)), torch.Generator().manual_seed(0)).double()
    for alpha in (1e-6, 0.05):
        y, logdet = logit_transform(x, alpha)
        bpd = bits_per_dim(-logdet, logdet, num_dims=9)
        torch.testing.assert_close(bpd, torch.full((5,), 8.0, dtype=torch.float64))


def test_standard_logistic_in_logit_space_is_uniform_in_pixel_space():
    """With alpha = 0, y = logit(x) and x ~ U[0,1] <=> y ~ standard logistic: 8 bits/dim, with the
    logistic density written independently of the transform's Jacobian."""
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, logdet = logit_transform(x, 0.0)
    logistic = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(torch.tensor(0.0).double(), torch.tensor(1.0).double()),
        [torch.distributions.SigmoidTransform().inv],
    )
    log_p_y = logistic.log_prob(y).sum(1)
    torch.testing.assert_close(bits_per_dim(log_p_y, logdet, 10), torch.full((4,), 8.0).double())


def test_bits_per_dim_of_one_pixel_by_hand():
    """One pixel of value 0 with u = 1/2, alpha = 0.05, a standard normal in logit space."""
    pixel, u, alpha = 0, 0.5, 0.05
    x = (pixel + u) / 256
    s = alpha + (1 - 2 * alpha) * x
    y = math.log(s / (1 - s))
    log_p_y = -0.5 * y * y - 0.5 * math.log(2 * math.pi)
    log_dy_dx = math.log((1 - 2 * alpha) / (s * (1 - s)))
    expected = -(log_p_y + log_dy_dx - math.log(256)) / math.log(2)  # -log2 p(pixel + u)
    yt, logdet = logit_transform(torch.tensor([[x]], dtype=torch.float64), alpha)
    assert abs(yt.item() - y) < 1e-12
    log_p = -0.5 * yt**2 - 0.5 * math.log(2 * math.pi)
    assert abs(bits_per_dim(log_p.sum(1), logdet, 1).item() - expected) < 1e-10


def test_dequantize_fills_each_bin_and_stays_below_one():
    pixels = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    x = dequantize(pixels, torch.Generator().manual_seed(0))
    assert ((x * 256).floor() == pixels.float()).all() and x.max() < 1
    torch.testing.assert_close(
        dequantize(pixels, noise=torch.full((1, 3), 0.5)), (pixels.float() + 0.5) / 256
    )


def test_evaluation_noise_of_an_image_does_not_depend_on_how_many_are_evaluated():
    a = dequantization_noise(250, (1, 2, 2), seed=3)
    b = dequantization_noise(1000, (1, 2, 2), seed=3)
    assert a.shape == (250, 1, 2, 2) and torch.equal(a, b[:250])
    assert not torch.equal(a, dequantization_noise(250, (1, 2, 2), seed=4))
    assert 0 <= b.min() and b.max() < 1


def test_alpha_out_of_range_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        logit_transform(torch.rand(2, 2), 0.5)
