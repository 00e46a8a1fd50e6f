"""Each of Glow's layers: inverse in both directions, log|det J| against autograd's Jacobian,
ActNorm's data-dependent initialisation, the LU 1x1 convolution (Eq. 10), the couplings' and the
split's starting maps, and the bits/dim conversion."""

from __future__ import annotations

import math

import pytest
import torch
from glow.layers import (
    ActNorm,
    Coupling,
    FlowStep,
    InvConv1x1,
    InvConv1x1LU,
    LearnedPrior,
    Split,
    Squeeze,
)
from glow.model import bits_per_dim, dequantize
from torch.autograd.functional import jacobian

torch.set_num_threads(1)  # the course machine's cores are shared
SHAPE = (4, 2, 2)  # C, H, W of the test inputs: 16 dimensions
LAYERS = (
    "actnorm",
    "invconv_plain",
    "invconv_lu",
    "coupling_affine",
    "coupling_additive",
    "squeeze",
    "split",
    "learned_prior",
    "step_lu_affine",
    "step_plain_additive",
)


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> torch.nn.Module:
    """Move every parameter off its initial value (zero-initialised layers would make the tests
    trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _batch(n: int, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def make_layer(name: str) -> torch.nn.Module:
    """A float64 layer with random parameters and initialised ActNorms, in eval mode."""
    torch.manual_seed(0)
    c = SHAPE[0]
    layer = {
        "actnorm": lambda: ActNorm(c),
        "invconv_plain": lambda: InvConv1x1(c),
        "invconv_lu": lambda: InvConv1x1LU(c),
        "coupling_affine": lambda: Coupling(c, hidden=8, kind="affine"),
        "coupling_additive": lambda: Coupling(c, hidden=8, kind="additive"),
        "squeeze": lambda: Squeeze(),
        "split": lambda: Split(c),
        "learned_prior": lambda: LearnedPrior(c),
        "step_lu_affine": lambda: FlowStep(c, 8, "lu", "affine"),
        "step_plain_additive": lambda: FlowStep(c, 8, "plain", "additive"),
    }[name]().double()
    layer.train()
    with torch.no_grad():
        layer(_batch(32, seed=5))  # ActNorms' data-dependent initialisation
    return _perturb(layer).eval()


@pytest.mark.parametrize("name", LAYERS)
def test_inverse_in_both_directions(name):
    layer = make_layer(name)
    x = _batch(3)
    with torch.no_grad():
        y, logdet = layer(x)
        assert logdet.shape == (3,)
        assert (layer.inverse(y) - x).abs().max() < 1e-5
        y2 = _batch(3, shape=y.shape[1:], seed=2)
        assert (layer(layer.inverse(y2))[0] - y2).abs().max() < 1e-5


@pytest.mark.parametrize("name", LAYERS)
def test_logdet_matches_the_jacobian(name):
    layer = make_layer(name)
    x = _batch(2, seed=3)
    _, logdet = layer(x)
    for b in range(2):
        jac = jacobian(lambda v: layer(v.view(1, *SHAPE))[0].reshape(-1), x[b].reshape(-1))
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0
        assert abs(logabsdet.item() - logdet[b].item()) < 1e-8, (name, b)


def test_actnorm_data_dependent_init_and_no_reinit_after_reload():
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(64, 3, 5, 5, generator=g) + torch.tensor([2.0, -1.0, 0.5]).view(
        1, 3, 1, 1
    )
    layer = ActNorm(3)
    assert layer.initialized.item() == 0 and "initialized" in layer.state_dict()
    y, logdet = layer(x)  # training mode: the first batch initialises
    assert layer.initialized.item() == 1
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4)
    assert torch.allclose(logdet, 25 * layer.logs.sum().expand(64))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    other = 5.0 * torch.randn(64, 3, 5, 5, generator=g) - 4.0
    layer(other)  # a second batch: no new initialisation
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())
    fresh = ActNorm(3)
    fresh.load_state_dict(state)
    fresh.train()
    fresh(other)  # loaded with initialized = 1: not initialised on this batch
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())
    # an uninitialised state loaded into an initialised layer re-enables the initialisation
    layer.load_state_dict(ActNorm(3).state_dict())
    layer(other)
    assert torch.allclose(layer(other)[0].mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_actnorm_is_not_initialised_in_eval_mode():
    layer = ActNorm(2).eval()
    x = torch.randn(8, 2, 3, 3)
    y, logdet = layer(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(8))
    assert layer.initialized.item() == 0


def test_lu_logdet_is_hw_times_slogdet_of_the_assembled_weight():
    torch.manual_seed(0)
    layer = _perturb(InvConv1x1LU(6).double(), scale=0.5)
    w = layer.weight_matrix()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    _, logdet = layer(x)
    sign, logabsdet = torch.linalg.slogdet(w)
    assert sign != 0
    assert torch.allclose(logdet, torch.full((2,), 15 * logabsdet.item(), dtype=torch.float64))
    # Eq. 10: the factors have the stated structure
    lower = layer.lower * layer.lower_mask + layer.eye
    assert torch.equal(torch.diagonal(lower), torch.ones(6, dtype=torch.float64))
    assert torch.equal(torch.triu(lower, 1), torch.zeros(6, 6, dtype=torch.float64))
    assert torch.allclose(layer.log_s.sum(), logabsdet)


def test_plain_and_lu_are_the_same_function_for_the_same_weight():
    torch.manual_seed(0)
    plain = _perturb(InvConv1x1(5).double(), scale=0.5)  # no longer a rotation
    lu = InvConv1x1LU(5, weight=plain.weight_matrix())
    assert torch.allclose(lu.weight_matrix(), plain.weight_matrix(), atol=1e-12)
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    (y_plain, ld_plain), (y_lu, ld_lu) = plain(x), lu(x)
    assert torch.allclose(y_plain, y_lu, atol=1e-12)
    assert torch.allclose(ld_plain, ld_lu, atol=1e-10)
    assert torch.allclose(plain.inverse(y_plain), lu.inverse(y_plain), atol=1e-10)


def test_the_1x1_convolution_starts_as_a_rotation():
    torch.manual_seed(0)
    for layer in (InvConv1x1(8), InvConv1x1LU(8)):
        w = layer.weight_matrix().double()
        assert torch.allclose(w @ w.T, torch.eye(8, dtype=torch.float64), atol=1e-4)
        assert abs(layer(torch.randn(1, 8, 2, 2))[1].item()) < 1e-4


def test_squeeze_order():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y, logdet = Squeeze()(x)
    assert y.shape == (1, 4, 2, 2) and logdet.item() == 0
    assert y[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left 2x2 block
    assert y[0, :, 1, 1].tolist() == [10.0, 11.0, 14.0, 15.0]


def test_couplings_and_split_start_from_their_zero_initialised_maps():
    torch.manual_seed(0)
    x = torch.randn(5, 4, 3, 3)
    affine, additive, split = Coupling(4, 8, "affine"), Coupling(4, 8, "additive"), Split(4)
    y, logdet = affine(x)
    s = torch.sigmoid(torch.tensor(2.0))  # sigmoid(0 + 2): the official code's scale at init
    assert torch.equal(y[:, :2], x[:, :2]) and torch.allclose(y[:, 2:], s * x[:, 2:])
    assert torch.allclose(logdet, torch.full((5,), 18 * math.log(s)))
    y, logdet = additive(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(5))
    y, logdet = split(x)  # prior N(0, I) at init: eps = z2
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(5))
    y, logdet = LearnedPrior(4)(x)  # the top prior too
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(5))


def test_bits_per_dim_of_hand_computed_densities():
    d = 784
    # uniform density in pixel space: 256^-D on [0, 256)^D, i.e. density 1 on [-1/2, 1/2)^D
    assert bits_per_dim(torch.zeros(3, dtype=torch.float64), d).tolist() == pytest.approx([8.0] * 3)
    # uniform on [-1/4, 1/4)^D: log p = D ln 2, one bit per dimension less
    assert bits_per_dim(torch.tensor([d * math.log(2.0)]), d).item() == pytest.approx(7.0)
    # a model that puts probability 1/256 on every bin of each pixel: 8 bits; 1/2: 1 bit
    assert bits_per_dim(torch.tensor([d * math.log(128.0)]), d).item() == pytest.approx(1.0)


def test_dequantize_stays_in_each_pixels_bin():
    images = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    y = dequantize(images.expand(1000, 1, 2, 2), torch.Generator().manual_seed(0))
    low = images.float() / 256 - 0.5
    assert ((y >= low) & (y < low + 1 / 256)).all()
    assert y.min() >= -0.5 and y.max() < 0.5
    assert torch.allclose(y.mean(0), low[0] + 0.5 / 256, atol=2e-4)
