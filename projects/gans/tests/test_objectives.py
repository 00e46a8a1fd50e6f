"""The three papers' losses against values computed by hand, and the gradient penalty (Eq. 3 of
Gulrajani et al.) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from gans import dcgan, sngan, wgan_gp
from torch import nn

torch.set_num_threads(1)


def identity(x: torch.Tensor) -> torch.Tensor:
    """A "discriminator" whose output is its input: the losses then act on given logits."""
    return x


def _logits(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1)


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def test_dcgan_discriminator_loss_is_minus_the_value_function():
    real, fake = [0.0, 2.0, -1.0], [-3.0, 0.5]
    loss, stats = dcgan.discriminator_loss(identity, _logits(*real), _logits(*fake))
    # -V(D, G) of Goodfellow et al. Eq. 1: -E[log D(x)] - E[log(1 - D(G(z)))], D = sigmoid(logit)
    expected = -sum(math.log(_sigmoid(t)) for t in real) / 3
    expected -= sum(math.log(1 - _sigmoid(t)) for t in fake) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["d_real"].item() == pytest.approx(sum(map(_sigmoid, real)) / 3, rel=1e-12)
    assert stats["d_fake"].item() == pytest.approx(sum(map(_sigmoid, fake)) / 2, rel=1e-12)
    # at D = 1/2 everywhere (logit 0): 2 log 2, the value at the game's equilibrium
    at_half, _ = dcgan.discriminator_loss(identity, _logits(0, 0), _logits(0, 0))
    assert at_half.item() == pytest.approx(2 * math.log(2), rel=1e-12)


def test_dcgan_generator_losses_and_why_the_non_saturating_one_is_used():
    fake = [-10.0, 1.0]
    non_saturating = dcgan.generator_loss(identity, _logits(*fake))
    saturating = dcgan.generator_loss(identity, _logits(*fake), saturating=True)
    assert non_saturating.item() == pytest.approx(
        -sum(math.log(_sigmoid(t)) for t in fake) / 2, rel=1e-12
    )
    assert saturating.item() == pytest.approx(
        sum(math.log(1 - _sigmoid(t)) for t in fake) / 2, rel=1e-12
    )
    # where D confidently rejects a sample (logit -10), log(1 - D) has a vanishing gradient,
    # -log D a gradient of about -1 (Goodfellow et al. Sec. 3)
    for saturating_loss, lo, hi in ((False, 0.9, 1.1), (True, 0.0, 1e-3)):
        logit = _logits(-10.0).requires_grad_(True)
        dcgan.generator_loss(identity, logit, saturating=saturating_loss).backward()
        assert lo <= abs(logit.grad.item()) <= hi


def test_hinge_losses():
    real, fake = _logits(2.0, 0.5, -1.0), _logits(-2.0, 0.0, 0.5)
    loss, stats = sngan.discriminator_loss(identity, real, fake)
    # E[relu(1 - D(x))] = (0 + 0.5 + 2) / 3, E[relu(1 + D(G(z)))] = (0 + 1 + 1.5) / 3
    assert loss.item() == pytest.approx(2.5 / 3 + 2.5 / 3, rel=1e-12)
    assert stats["d_real"].item() == pytest.approx(0.5) and stats["d_fake"].item() == pytest.approx(
        -0.5
    )
    assert sngan.generator_loss(identity, fake).item() == pytest.approx(0.5)
    # beyond the margins the hinge is flat: no gradient from confident, correct scores
    confident = _logits(5.0).requires_grad_(True)
    sngan.discriminator_loss(identity, confident, _logits(-5.0))[0].backward()
    assert confident.grad.item() == 0.0


def test_wasserstein_losses_with_an_identity_critic():
    # D(x) = x has gradient 1 at every point: the penalty is 0 and L = E[D(x~)] - E[D(x)]
    real, fake = _logits(1.0, 3.0), _logits(-1.0, 0.5)
    loss, stats = wgan_gp.discriminator_loss(identity, real, fake)
    assert loss.item() == pytest.approx(-0.25 - 2.0, rel=1e-12)
    assert stats["wasserstein"].item() == pytest.approx(2.25, rel=1e-12)
    assert stats["gradient_penalty"].item() == pytest.approx(0.0, abs=1e-12)
    assert wgan_gp.generator_loss(identity, fake).item() == pytest.approx(0.25)


def _linear_critic(norm: float) -> nn.Module:
    D = nn.Sequential(nn.Flatten(), nn.Linear(784, 1)).double()
    with torch.no_grad():
        w = torch.randn(1, 784, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        D[1].weight.copy_(norm * w / w.norm())
        D[1].bias.fill_(0.7)
    return D


def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared():
    # D(x) = w.x + b: grad_x^ D(x^) = w for every x^, so E[(||w|| - 1)^2] = (||w|| - 1)^2
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(6, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    fake = torch.rand(6, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    D = _linear_critic(3.0)
    assert wgan_gp.gradient_penalty(D, real, fake).item() == pytest.approx(4.0, rel=1e-12)
    loss, stats = wgan_gp.discriminator_loss(D, real, fake, lambda_gp=10.0)
    w = D[1].weight.flatten()
    expected = (fake.flatten(1) @ w).mean() - (real.flatten(1) @ w).mean() + 10.0 * 4.0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert stats["gradient_penalty"].item() == pytest.approx(4.0, rel=1e-12)
    assert wgan_gp.gradient_penalty(_linear_critic(1.0), real, fake).item() == pytest.approx(
        0.0, abs=1e-20
    )


def test_interpolates_draw_one_eps_per_example_on_the_segment():
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.rand(8, 1, 28, 28, generator=gen), torch.rand(8, 1, 28, 28, generator=gen)
    x_hat = wgan_gp.interpolates(real, fake, torch.Generator().manual_seed(2))
    eps = (x_hat - fake) / (real - fake)  # the same number at every pixel of an example
    per_example = eps.flatten(1)
    assert torch.allclose(per_example, per_example[:, :1].expand_as(per_example), atol=1e-3)
    e = per_example[:, 0]
    assert ((e >= 0) & (e <= 1)).all() and e.unique().numel() == 8
    again = wgan_gp.interpolates(real, fake, torch.Generator().manual_seed(2))
    assert torch.equal(x_hat, again)


class TanhCritic(nn.Module):
    """D(x) = sum_j v_j tanh(a_j . x): grad_x D(x) = sum_j v_j (1 - tanh^2(a_j . x)) a_j."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(4)
        self.A = nn.Parameter(torch.randn(5, 784, generator=gen, dtype=torch.float64) / 20)
        self.v = nn.Parameter(torch.randn(5, generator=gen, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1) @ self.A.t()) @ self.v


def test_gradient_penalty_of_a_nonlinear_critic_and_its_gradient():
    gen = torch.Generator().manual_seed(5)
    real = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    fake = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    D = TanhCritic()
    penalty = wgan_gp.gradient_penalty(D, real, fake, torch.Generator().manual_seed(6))
    # by hand, with the same eps
    x_hat = wgan_gp.interpolates(real, fake, torch.Generator().manual_seed(6)).flatten(1)
    with torch.no_grad():
        t = torch.tanh(x_hat @ D.A.t())  # [4, 5]
        grad = ((1 - t**2) * D.v) @ D.A  # [4, 784]
        expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-10)
    # the penalty is differentiable in D's weights (create_graph): compare with finite differences
    penalty.backward()
    h = 1e-6
    grad_v = D.v.grad.clone()

    def penalty_at(j: int, step: float) -> float:
        with torch.no_grad():
            D.v[j] += step
        value = wgan_gp.gradient_penalty(D, real, fake, torch.Generator().manual_seed(6)).item()
        with torch.no_grad():
            D.v[j] -= step
        return value

    for j in range(5):
        numeric = (penalty_at(j, h) - penalty_at(j, -h)) / (2 * h)
        assert grad_v[j].item() == pytest.approx(numeric, rel=1e-5)
