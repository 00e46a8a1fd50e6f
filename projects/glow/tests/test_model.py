"""The whole multi-scale model: inverse, log-likelihood against autograd's Jacobian, the latents'
shapes, temperature sampling, and ActNorm's initialisation through a state dict."""

from __future__ import annotations

import pytest
import torch
from glow.layers import standard_normal_log_prob
from glow.model import Glow, to_images
from torch.autograd.functional import jacobian

torch.set_num_threads(1)  # the course machine's cores are shared
VARIANTS = [("lu", "affine"), ("plain", "affine"), ("lu", "additive")]


def tiny_model(permutation: str = "lu", coupling: str = "affine", levels: int = 2) -> Glow:
    """A float64 Glow for 1x4x4 images (16 dimensions: 2x2x2 and 8x1x1 latents) with random
    parameters and initialised ActNorms, in eval mode."""
    torch.manual_seed(0)
    model = Glow(levels, 2, 8, permutation, coupling, in_channels=1, image_size=4).double()
    g = torch.Generator().manual_seed(1)
    model.initialize(torch.rand(64, 1, 4, 4, generator=g, dtype=torch.float64) - 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


def _flat(zs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([z.flatten(1) for z in zs], 1)


@pytest.mark.parametrize(("permutation", "coupling"), VARIANTS)
def test_encode_decode_are_inverse(permutation, coupling):
    model = tiny_model(permutation, coupling)
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) - 0.5
    with torch.no_grad():
        zs = model.encode(x)
        assert (model.decode(zs) - x).abs().max() < 1e-5
        zs2 = [torch.randn(5, *shape, dtype=torch.float64) for shape in model.latent_shapes]
        assert (_flat(model.encode(model.decode(zs2))) - _flat(zs2)).abs().max() < 1e-5


@pytest.mark.parametrize(("permutation", "coupling"), VARIANTS)
def test_log_prob_is_the_change_of_variables(permutation, coupling):
    model = tiny_model(permutation, coupling)
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64) - 0.5
    zs, logdet = model.flow(x)
    log_prob = model.log_prob(x)
    for b in range(2):
        jac = jacobian(lambda v: _flat(model.encode(v.view(1, 1, 4, 4)))[0], x[b].reshape(-1))
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0 and abs(logabsdet.item() - logdet[b].item()) < 1e-8
        z = _flat([z[b : b + 1] for z in zs])
        expected = standard_normal_log_prob(z) + logabsdet
        assert abs(log_prob[b].item() - expected.item()) < 1e-8


def test_latent_shapes_of_the_mnist_model():
    assert Glow().latent_shapes == [(2, 14, 14), (8, 7, 7)]
    assert Glow(levels=1).latent_shapes == [(4, 14, 14)]
    model = Glow(levels=2, steps=1, hidden=4)
    zs = model.encode(torch.rand(3, 1, 28, 28) - 0.5)
    assert [tuple(z.shape) for z in zs] == [(3, 2, 14, 14), (3, 8, 7, 7)]
    assert sum(z[0].numel() for z in zs) == 784 == model.num_dims
    with pytest.raises(ValueError, match="divisible by 8"):
        Glow(levels=3)
    with pytest.raises(ValueError, match="permutation"):
        Glow(permutation="reverse")


def test_sampling_at_temperature_zero_decodes_the_zero_latents():
    model = tiny_model().float()
    zeros = [torch.zeros(3, *shape) for shape in model.latent_shapes]
    with torch.no_grad():
        mode = to_images(model.decode(zeros))
    samples = model.sample(3, temperature=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, mode)
    assert torch.equal(samples[0], samples[1])


def test_temperature_scales_every_latent():
    model = tiny_model().float()
    latents = model.sample_latents(4, 0.5, torch.Generator().manual_seed(3))
    unit = model.sample_latents(4, 1.0, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, 0.5 * b) for a, b in zip(latents, unit, strict=True))
    with torch.no_grad():
        expected = to_images(model.decode(latents))
    samples = model.sample(4, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(samples, expected) and samples.min() >= 0 and samples.max() <= 1


def test_initialisation_travels_in_the_state_dict():
    torch.manual_seed(0)
    model = Glow(levels=2, steps=1, hidden=4)
    assert not model.initialized
    x = torch.rand(16, 1, 28, 28) - 0.5
    model.initialize(x)
    assert model.initialized and model.training  # initialize() keeps the mode
    fresh = Glow(levels=2, steps=1, hidden=4)
    fresh.load_state_dict(model.state_dict())
    assert fresh.initialized
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    fresh.train()
    fresh.loss(torch.rand(16, 1, 28, 28) * 0.2 - 0.1)  # another batch, training mode
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items())


def test_the_first_actnorm_normalises_the_init_batch():
    torch.manual_seed(0)
    model = Glow(levels=2, steps=2, hidden=4)
    x = torch.rand(32, 1, 28, 28) * 0.6 - 0.4
    model.initialize(x)
    h, _ = model.squeeze(x)
    y, _ = model.flows[0][0].actnorm(h)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), correction=0), torch.ones(4), atol=1e-4)
