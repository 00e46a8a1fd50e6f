"""Spectral normalisation (Miyato et al. 2018, Eq. 8 and Algorithm 1) against the exact spectral
norm, against torch's own implementation, and one power-iteration step against the algorithm."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from gans.networks import Discriminator
from gans.sngan import SpectralNorm
from torch import nn

torch.set_num_threads(1)


def _layers() -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Linear(20, 30), nn.Conv2d(3, 5, 4, stride=2, padding=1), nn.Linear(40, 1)]


def _input(layer: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if isinstance(layer, nn.Conv2d):
        return torch.randn(2, 3, 8, 8, generator=gen)
    return torch.randn(2, layer.in_features, generator=gen)


@pytest.mark.parametrize("index", range(3))
def test_power_iteration_converges_to_the_spectral_norm(index):
    sn = SpectralNorm(_layers()[index])
    W = sn.module.weight.detach().reshape(sn.module.weight.shape[0], -1)  # conv: [out, in*k*k]
    exact = torch.linalg.matrix_norm(W, ord=2)
    first = sn.sigma().item()
    sn.power_iteration(100)
    assert sn.sigma().item() == pytest.approx(exact.item(), rel=1e-4)
    assert first <= exact.item() + 1e-5  # u^T W v never exceeds sigma(W) for unit u, v
    # W_SN = W / sigma(W) has spectral norm 1 (Eq. 8)
    W_sn = sn.normalized_weight().detach().reshape(W.shape)
    assert torch.linalg.matrix_norm(W_sn, ord=2).item() == pytest.approx(1.0, rel=1e-4)


def test_one_forward_is_one_step_of_algorithm_1():
    conv = nn.Conv2d(3, 5, 4, stride=2, padding=1)
    sn = SpectralNorm(conv)
    u0 = F.normalize(torch.arange(1.0, 6.0), dim=0)
    sn.u.copy_(u0)
    x = _input(conv)
    out = sn(x)  # training mode: one step, then W / sigma
    W = conv.weight.detach().reshape(5, -1)
    v1 = W.t() @ u0
    v1 = v1 / v1.norm()
    u1 = W @ v1
    u1 = u1 / u1.norm()
    sigma = u1 @ W @ v1
    assert torch.allclose(sn.u, u1, atol=1e-6) and torch.allclose(sn.v, v1, atol=1e-6)
    expected = F.conv2d(x, conv.weight / sigma, conv.bias, stride=2, padding=1)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("index", range(3))
def test_matches_torch_spectral_norm_once_both_have_converged(index):
    layer = _layers()[index]
    ours = SpectralNorm(copy.deepcopy(layer))
    theirs = nn.utils.parametrizations.spectral_norm(copy.deepcopy(layer), n_power_iterations=1)
    x = _input(layer)
    for _ in range(200):  # 200 forward passes in training mode: 200 power-iteration steps each
        ours(x)
        theirs(x)
    ours.eval()
    theirs.eval()
    assert torch.allclose(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_eval_mode_freezes_u_and_the_state_dict_carries_it():
    D = Discriminator(width=4, norm="spectral")
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    D(x)  # training mode: u, v move
    state = copy.deepcopy(D.state_dict())
    assert {"net.0.u", "net.0.v", "net.2.u", "net.6.u"} <= set(state)
    D.eval()
    before = D.net[0].u.clone()
    assert torch.equal(D(x), D(x)) and torch.equal(D.net[0].u, before)
    # a discriminator rebuilt from the state dict continues the power iteration identically
    twin = Discriminator(width=4, norm="spectral")
    twin.load_state_dict(state)
    D.train()
    assert torch.equal(D(x), twin(x))
    assert torch.equal(D.net[2].u, twin.net[2].u)


def test_every_layer_of_the_sngan_discriminator_is_normalised():
    D = Discriminator(width=4, norm="spectral")
    wrapped = [m for m in D.modules() if isinstance(m, SpectralNorm)]
    plain = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(wrapped) == len(plain) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    for sn in wrapped:
        sn.power_iteration(200)
        W = sn.normalized_weight().detach()
        assert torch.linalg.matrix_norm(W.reshape(W.shape[0], -1), ord=2).item() == pytest.approx(
            1.0, rel=1e-3
        )
