"""The samplers (samplers.py) and guided prediction (model.py) on small networks and closed forms."""

from __future__ import annotations

import pytest
import torch
from ddpm import samplers
from ddpm.model import DDPM
from ddpm.schedule import NoiseSchedule

torch.set_num_threads(1)  # the course machine's cores are shared
SMALL = dict(T=40, base_channels=8, channel_mults=[1, 1, 2], groups=4)


def _model(seed: int = 0) -> DDPM:
    """A small DDPM whose output is not zero (the last convolutions start at zero)."""
    torch.manual_seed(seed)
    model = DDPM(**SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_samplers_are_deterministic_under_a_seed():
    model = _model()
    settings = [
        dict(sampler="ddim", steps=10),
        dict(sampler="ddim", steps=7, eta=0.5),
        dict(sampler="ddpm", steps=40, variance="beta"),
        dict(sampler="ddpm", steps=8, variance="beta_tilde"),
        dict(sampler="ddim", steps=5, labels=torch.arange(4) % 10, w=2.0),
    ]
    for options in settings:
        a = model.sample(4, torch.Generator().manual_seed(3), **options)
        b = model.sample(4, torch.Generator().manual_seed(3), **options)
        c = model.sample(4, torch.Generator().manual_seed(4), **options)
        assert torch.equal(a, b) and not torch.equal(a, c), options
        assert a.shape == (4, 1, 28, 28) and 0 <= a.min() <= a.max() <= 1


def test_deterministic_ddim_depends_on_x_T_only():
    model = _model()
    x_T = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = model.sample(3, torch.Generator().manual_seed(1), steps=6, x_T=x_T)
    b = model.sample(3, torch.Generator().manual_seed(2), steps=6, x_T=x_T)
    assert torch.equal(a, b)
    c = model.sample(3, torch.Generator().manual_seed(1), steps=6, eta=1.0, x_T=x_T)
    d = model.sample(3, torch.Generator().manual_seed(2), steps=6, eta=1.0, x_T=x_T)
    assert not torch.equal(c, d)


def test_the_ancestral_sampler_is_algorithm_2():
    """With every step, ``samplers.ancestral`` equals Algorithm 2 written out with Eq. 11, the
    same x_T and the same z at every step, for both choices of sigma_t^2."""
    s = NoiseSchedule.linear(30)
    weights = torch.linspace(0.1, 0.9, 30, dtype=torch.float64)

    def eps_fn(x, t):  # any function of (x_t, t) will do
        return torch.tanh(x) * weights[t - 1].reshape(-1, 1)

    x_T = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kind, sigma2 in (("beta", s.beta), ("beta_tilde", s.beta_tilde)):
        got = samplers.ancestral(eps_fn, s, x_T, torch.Generator().manual_seed(1), variance=kind)
        gen = torch.Generator().manual_seed(1)
        x = x_T
        for t in range(30, 0, -1):
            tt = torch.full((5,), t)
            mean = (x - s.beta[t] / (1 - s.alpha_bar[t]).sqrt() * eps_fn(x, tt)) / s.alpha[t].sqrt()
            z = torch.randn(x.shape, generator=gen, dtype=x.dtype) if t > 1 else 0.0
            x = mean + sigma2[t].sqrt() * z
        assert torch.allclose(got, x, atol=1e-10), kind


def test_a_ddim_step_with_eta_1_is_the_ddpm_step_with_beta_tilde():
    s = NoiseSchedule.linear(100)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    for t, prev in ((100, 99), (60, 40), (2, 1)):
        z = torch.randn(4, 9, generator=torch.Generator().manual_seed(t), dtype=x.dtype)
        ddim = samplers.ddim_step(s, x, eps, t, prev, 1.0, torch.Generator().manual_seed(t))
        mean, var = s.posterior(s.predict_x0(x, t, eps), x, t, prev)
        assert torch.allclose(ddim, mean + var.sqrt() * z, atol=1e-10)


def test_ddim_inversion_undoes_decoding():
    """Encoding then decoding is exact when eps_theta does not depend on x; for the optimal
    eps_theta of Gaussian data, eps = sqrt(1 - alpha_bar_t) x_t, the reconstruction error falls
    as the number of steps grows (the ODE of Song et al. Eq. 14 is solved more finely)."""
    s = NoiseSchedule.linear()
    x0 = torch.randn(8, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    offsets = torch.linspace(-1, 1, 16, dtype=torch.float64)

    def constant(x, t):
        return offsets * (t.double() / 1000).reshape(-1, 1)

    x_T = samplers.ddim_invert(constant, s, x0, steps=25)
    assert not torch.allclose(x_T, x0)
    assert torch.allclose(samplers.ddim(constant, s, x_T, steps=25), x0, atol=1e-8)

    def gaussian(x, t):
        return (1 - s.alpha_bar[t]).sqrt().reshape(-1, 1).to(x) * x

    errors = []
    for steps in (10, 100, 1000):
        x_T = samplers.ddim_invert(gaussian, s, x0, steps=steps)
        errors.append(float((samplers.ddim(gaussian, s, x_T, steps=steps) - x0).abs().max()))
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.05, errors


def test_slerp_keeps_the_end_points_and_the_norm_of_orthogonal_latents():
    a = torch.tensor([[3.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0]])
    assert torch.allclose(samplers.slerp(a, b, 0.0), a) and torch.allclose(
        samplers.slerp(a, b, 1.0), b
    )
    middle = samplers.slerp(a, b, 0.5)
    assert torch.allclose(middle.norm(), torch.tensor(3.0)) and torch.allclose(
        middle[0, 0], middle[0, 1]
    )


def test_guidance_convention_w_0_is_the_conditional_and_w_minus_1_the_unconditional_model():
    """eps_tilde = (1 + w) eps(x, c) - w eps(x, null) (Ho & Salimans Eq. 6): w = 0 gives the
    conditional prediction, w = -1 the unconditional one, any w the line through them; all
    from the batched call of ``DDPM.eps``."""
    model = _model()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 28, 28, generator=gen)
    t = torch.tensor([1, 10, 25, 40])
    y = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        cond, uncond = model.net(x, t, y), model.net(x, t, torch.full_like(y, 10))
        assert not torch.allclose(cond, uncond)
        assert torch.allclose(model.eps(x, t, y, w=0.0), cond, atol=1e-6)
        assert torch.allclose(model.eps(x, t, y, w=-1.0), uncond, atol=1e-5)
        for w in (0.5, 3.0):
            assert torch.allclose(model.eps(x, t, y, w=w), (1 + w) * cond - w * uncond, atol=1e-5)
        assert torch.allclose(model.eps(x, t, None), uncond, atol=1e-6)  # no labels: null


def test_bad_sampler_options_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="one label per sample"):
        model.sample(3, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="class indices 0..num_classes-1"):
        model.sample(2, labels=torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="sampler is one of ddim, ddpm"):
        model.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="eta must be >= 0"):
        model.sample(2, eta=-0.1)
