"""The whole flows (RealNVP multi-scale and NICE): invertibility, log-determinant against autograd,
the full bits/dim pipeline against the change of variables done by hand, latent shapes, the
prior, and sampling (temperature 0 gives the image of z = 0)."""

from __future__ import annotations

import math

import pytest
import torch
from realnvp.checks import jacobian_logdet, randomize
from realnvp.model import Flow, dataset_bits_per_dim, prior_log_prob
from realnvp.preprocess import dequantization_noise, dequantize, to_image

torch.set_num_threads(1)  # the course machine's cores are shared

SMALL = {
    "realnvp-2-scales-4x4": dict(kind="realnvp", image_size=4, scales=2, channels=4, blocks=1),
    "realnvp-3-scales-8x8": dict(kind="realnvp", image_size=8, scales=3, channels=4, blocks=1),
    "realnvp-1-scale-4x4": dict(kind="realnvp", image_size=4, scales=1, channels=4, blocks=2),
    "nice-4x4": dict(kind="nice", image_size=4, nice_couplings=4, nice_hidden=8, nice_layers=2),
    "nice-logistic": dict(
        kind="nice", image_size=4, nice_hidden=8, nice_layers=1, prior="logistic"
    ),
}


def small_flow(name: str, seed: int = 0) -> Flow:
    return randomize(Flow(**SMALL[name]), scale=0.2, seed=seed)


def _flat(zs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([z.flatten(1) for z in zs], dim=1)


@pytest.mark.parametrize("name", SMALL)
def test_flow_is_invertible_both_ways(name):
    flow = small_flow(name)
    size = flow.image_shape
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(4, *size, generator=gen, dtype=torch.float64)
    zs, logdet = flow(y)
    assert logdet.shape == (4,) and _flat(zs).shape == (4, math.prod(size))
    assert not torch.allclose(_flat(zs), y.flatten(1))
    torch.testing.assert_close(flow.inverse(zs), y, atol=1e-5, rtol=0)
    zs2 = [torch.randn(z.shape, generator=gen, dtype=torch.float64) for z in zs]
    for a, b in zip(flow(flow.inverse(zs2))[0], zs2, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SMALL)
def test_flow_logdet_matches_autograd_jacobian(name):
    flow = small_flow(name, seed=1)
    y = torch.randn(1, *flow.image_shape, generator=torch.Generator().manual_seed(2)).double()
    expected = jacobian_logdet(lambda v: _flat(flow(v)[0]), y)
    torch.testing.assert_close(flow(y)[1][0], expected, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", ["realnvp-2-scales-4x4", "nice-logistic"])
def test_bits_per_dim_is_the_change_of_variables_from_pixels_to_latents(name):
    """The whole pipeline x in [0,1)^D -> logit space -> z, with its Jacobian by autograd:
    bits/dim = -(log p_Z(z) + log|det dz/dx|) / (D ln 2) + 8."""
    flow = small_flow(name, seed=3)
    D = math.prod(flow.image_shape)
    pixels = torch.randint(
        0, 256, (1, *flow.image_shape), generator=torch.Generator().manual_seed(4)
    )
    x = dequantize(pixels, torch.Generator().manual_seed(5)).double()

    def pixels_to_latents(v: torch.Tensor) -> torch.Tensor:
        s = flow.alpha + (1 - 2 * flow.alpha) * v
        return _flat(flow(torch.log(s / (1 - s)))[0])

    z = pixels_to_latents(x)
    log_prior = prior_log_prob(z, flow.prior)[0]
    expected = -(log_prior + jacobian_logdet(pixels_to_latents, x)) / (D * math.log(2)) + 8
    torch.testing.assert_close(flow.bits_per_dim(x)[0], expected, atol=1e-8, rtol=1e-8)


def test_latent_shapes_of_the_multi_scale_architecture():
    assert Flow().latent_shapes == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]
    assert Flow(scales=2).latent_shapes == [(2, 14, 14), (2, 14, 14)]
    assert Flow(scales=1, channels=2, blocks=1).latent_shapes == [(1, 28, 28)]
    assert Flow(kind="nice", nice_hidden=8, nice_layers=1).latent_shapes == [(784,)]
    flow = Flow(channels=4, blocks=1)
    zs, logdet = flow(torch.randn(2, 1, 28, 28))
    assert [tuple(z.shape[1:]) for z in zs] == flow.latent_shapes and logdet.shape == (2,)
    with pytest.raises(ValueError, match="divisible"):
        Flow(scales=4)


def test_priors_are_normalised_standard_densities():
    z = torch.linspace(-6, 6, 13).view(1, -1)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
    torch.testing.assert_close(prior_log_prob(z, "gaussian")[0], normal)
    logistic = (-z - 2 * torch.log1p(torch.exp(-z))).sum()  # log e^-z / (1 + e^-z)^2
    torch.testing.assert_close(prior_log_prob(z, "logistic")[0], logistic)


@pytest.mark.parametrize("name", ["realnvp-2-scales-4x4", "nice-4x4", "nice-logistic"])
def test_temperature_zero_gives_the_image_of_z_zero(name):
    flow = small_flow(name).float()
    images = flow.sample(3, temperature=0.0, generator=torch.Generator().manual_seed(0))
    zeros = [torch.zeros(1, *shape) for shape in flow.latent_shapes]
    with torch.no_grad():
        expected = to_image(flow.inverse(zeros), flow.alpha)
    assert images.shape == (3, *flow.image_shape)
    for image in images:
        torch.testing.assert_close(image, expected[0])


def test_samples_are_images_and_reproducible():
    flow = small_flow("realnvp-3-scales-8x8").float()
    a = flow.sample(6, 1.0, torch.Generator().manual_seed(7))
    b = flow.sample(6, 1.0, torch.Generator().manual_seed(7))
    c = flow.sample(6, 1.0, torch.Generator().manual_seed(8))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_config_rebuilds_the_model():
    flow = Flow(kind="nice", nice_hidden=8, nice_layers=1, alpha=1e-6)
    config = flow.config()
    assert Flow(**config).config() == config and config["alpha"] == 1e-6
    assert "mask" not in " ".join(Flow(channels=2, blocks=1).state_dict())  # masks are rebuilt


def test_dataset_bits_per_dim_uses_the_given_noise_batch_by_batch():
    flow = small_flow("realnvp-2-scales-4x4").float()
    pixels = torch.randint(0, 256, (7, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    noise = dequantization_noise(7, (1, 4, 4), seed=0)
    per_image = dataset_bits_per_dim(flow, pixels, noise, batch_size=3)
    with torch.no_grad():
        direct = flow.bits_per_dim(dequantize(pixels, noise=noise)).double()
    assert per_image.shape == (7,) and per_image.dtype == torch.float64
    torch.testing.assert_close(per_image, direct, atol=1e-5, rtol=0)
