"""Shapes and ranges of G and D on both datasets, DCGAN's initialisation, and the generator that
is evaluated (eval mode, standing batch-norm statistics)."""

from __future__ import annotations

import pytest
import torch
from gans import dcgan
from gans.networks import NORMS, Discriminator, Generator, draw, standing_statistics
from gans.train import to_model_range
from torch import nn

from shared_utils.data import dataset_tensors

torch.set_num_threads(1)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_shapes_and_ranges_on_both_datasets(dataset):
    images, _ = dataset_tensors(dataset, "train")
    x = to_model_range(images[:16])
    assert x.shape == (16, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert to_model_range(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    torch.manual_seed(0)
    G = Generator(z_dim=8, width=8)
    fake = G(torch.randn(16, 8))
    assert fake.shape == x.shape and fake.min() >= -1 and fake.max() <= 1
    for norm in NORMS:
        D = Discriminator(width=8, norm=norm)
        for batch in (x, fake):
            out = D(batch)
            assert out.shape == (16, 1) and torch.isfinite(out).all()


def test_generator_config_and_seeded_samples():
    G = Generator(z_dim=5, width=3)
    assert G.config() == {"z_dim": 5, "width": 3} and Generator().config() == {
        "z_dim": 64,
        "width": 64,
    }
    G.eval()
    a = G.sample(7, generator=torch.Generator().manual_seed(1))
    b = G.sample(7, generator=torch.Generator().manual_seed(1))
    assert a.shape == (7, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not a.requires_grad
    assert torch.equal(draw(G, 7, seed=1, chunk=1000), a)  # draw: the sampler's seeded samples
    assert draw(G, 5, seed=2, chunk=2).shape == (5, 1, 28, 28)
    with pytest.raises(ValueError):
        Discriminator(norm="layer")


def test_discriminator_norms():
    kinds = {norm: {type(m) for m in Discriminator(4, norm).modules()} for norm in NORMS}
    assert nn.BatchNorm2d in kinds["batch"]
    assert nn.BatchNorm2d not in kinds["none"] and nn.BatchNorm2d not in kinds["spectral"]
    # with batch norm after it, the second convolution needs no bias
    assert Discriminator(4, "batch").net[2].bias is None
    assert Discriminator(4, "none").net[2].bias is not None


def test_dcgan_initialisation():
    torch.manual_seed(0)
    G = Generator(z_dim=16, width=16).apply(dcgan.init_weights)
    D = Discriminator(width=16, norm="batch").apply(dcgan.init_weights)
    for net in (G, D):
        for m in net.modules():
            if (
                isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
                and m.weight.numel() > 1000
            ):
                assert m.weight.mean().abs() < 0.005 and 0.018 < m.weight.std() < 0.022
            if isinstance(m, nn.BatchNorm2d):
                assert (m.weight - 1).abs().max() < 0.2 and torch.equal(
                    m.bias, torch.zeros_like(m.bias)
                )


def test_standing_statistics_are_the_generators_own():
    torch.manual_seed(0)
    G = Generator(z_dim=8, width=4)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G_eval = standing_statistics(G, batches=1, batch_size=32, seed=3)
    assert not G_eval.training and G.training
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())  # G untouched
    z = G.sample_z(32, torch.Generator().manual_seed(3))  # the same z as standing_statistics
    h = G.project(z).view(32, 8, 7, 7)  # the input of the first batch norm
    bn = G_eval.net[0]
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var(dim=(0, 2, 3)), rtol=1e-4)
    assert bn.momentum == G.net[0].momentum
