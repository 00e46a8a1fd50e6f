"""Every layer type: exactly invertible both ways (float64) and its log|det J| equal to the
log-determinant of its full Jacobian computed by autograd, on small inputs with random weights."""

from __future__ import annotations

import pytest
import torch
from realnvp.checks import jacobian_logdet, randomize
from realnvp.layers import (
    AdditiveCoupling,
    ChannelAffineCoupling,
    DiagonalScaling,
    Squeeze,
    VectorAffineCoupling,
    checkerboard_coupling,
    checkerboard_mask,
)

torch.set_num_threads(1)  # the course machine's cores are shared


LAYERS = {  # name: (constructor, shape of one input)
    "checkerboard-0": (lambda: checkerboard_coupling(1, 4, 4, 0, 4, 1), (1, 4, 4)),
    "checkerboard-1": (lambda: checkerboard_coupling(2, 4, 4, 1, 4, 2), (2, 4, 4)),
    "channel-0": (lambda: ChannelAffineCoupling(4, 0, 4, 1), (4, 2, 2)),
    "channel-1": (lambda: ChannelAffineCoupling(4, 1, 4, 1), (4, 2, 2)),
    "squeeze": (Squeeze, (2, 4, 4)),  # output 8 x 2 x 2
    "additive-0": (lambda: AdditiveCoupling(8, 0, 8, 2), (8,)),
    "additive-1": (lambda: AdditiveCoupling(8, 1, 8, 2), (8,)),
    "diagonal-scaling": (lambda: DiagonalScaling(8), (8,)),
    "vector-affine": (lambda: VectorAffineCoupling(torch.tensor([1.0, 0.0, 1.0]), 8), (3,)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_is_invertible_both_ways(name):
    make, shape = LAYERS[name]
    layer = randomize(make())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, *shape, generator=gen, dtype=torch.float64)
    y, logdet = layer(x)
    assert y.numel() == x.numel() and logdet.shape == (5,)
    assert not torch.allclose(y.flatten(), x.flatten())  # the layer does something
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-5, rtol=0)
    z = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(layer(layer.inverse(z))[0], z, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_logdet_matches_autograd_jacobian(name):
    make, shape = LAYERS[name]
    layer = randomize(make(), seed=2)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        x = torch.randn(1, *shape, generator=gen, dtype=torch.float64)
        expected = jacobian_logdet(lambda v: layer(v)[0], x)
        torch.testing.assert_close(layer(x)[1][0], expected, atol=1e-8, rtol=1e-8)


def test_volume_preserving_layers_have_zero_logdet():
    x = torch.randn(3, 8, dtype=torch.float64)
    assert torch.equal(randomize(AdditiveCoupling(8, 0, 8, 2))(x)[1], torch.zeros(3).double())
    assert torch.equal(Squeeze()(x.view(3, 2, 2, 2))[1], torch.zeros(3).double())


def test_additive_coupling_keeps_one_half_and_adds_to_the_other():
    layer = randomize(AdditiveCoupling(8, 0, 8, 2))
    x = torch.randn(2, 8, dtype=torch.float64)
    y, _ = layer(x)
    assert torch.equal(y[:, 0::2], x[:, 0::2])  # parity 0: the even coordinates are I1
    with torch.no_grad():
        torch.testing.assert_close(y[:, 1::2] - x[:, 1::2], layer.m(x[:, 0::2]))


def test_masked_coupling_keeps_the_masked_entries_and_starts_at_the_identity():
    layer = randomize(checkerboard_coupling(1, 4, 4, 1, 4, 1))
    b = checkerboard_mask(1, 4, 4, 1).double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    y, _ = layer(x)
    assert torch.equal(y * b, x * b) and not torch.allclose(y, x)
    fresh = checkerboard_coupling(1, 4, 4, 0, 4, 1)  # zero output layer: the identity map
    y, logdet = fresh(x.float())
    assert torch.equal(y, x.float()) and torch.equal(logdet, torch.zeros(2))


def test_checkerboard_masks_alternate():
    b0, b1 = checkerboard_mask(2, 3, 4, 0), checkerboard_mask(2, 3, 4, 1)
    assert b0.shape == (1, 2, 3, 4) and torch.equal(b0 + b1, torch.ones(1, 2, 3, 4))
    assert b0[0, 0, 0, 0] == 1 and b0[0, 0, 0, 1] == 0 and b0[0, 0, 1, 0] == 0
    assert torch.equal(b0[0, 0], b0[0, 1])


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(2 * 2 * 4 * 6, dtype=torch.float64).view(2, 2, 4, 6)
    y, _ = Squeeze()(x)
    assert y.shape == (2, 8, 2, 3)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                assert torch.equal(y[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])


def test_log_scales_are_bounded_by_the_learned_scale():
    layer = ChannelAffineCoupling(4, 0, 4, 1)
    with torch.no_grad():
        for p in layer.net.out.parameters():
            p.fill_(100.0)  # a huge raw log-scale
        layer.net.bound.scale.fill_(2.0)
    x = torch.randn(3, 4, 2, 2)
    y, logdet = layer(x)
    assert torch.isfinite(y).all() and (logdet <= 2.0 * 2 * 2 * 2 + 1e-4).all()
