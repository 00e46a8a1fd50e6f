"""Tests of the paper's math: Gumbel noise, Gumbel-Max (Jang Eq. 1), Gumbel-softmax (Eq. 2), the
straight-through estimator, the categorical KL, the temperature schedule and the importance
weighted bound of the discrete model against its exact likelihood.

Origin: written for dgm-course (MIT licence).

Statistical tests are seeded and use tolerances of about four standard errors (or a chi-square
quantile of 0.9999), so they fail when the distribution is wrong and not by chance.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from gumbel_vae.model import (
    Model,
    categorical_kl_uniform,
    gumbel_max,
    gumbel_softmax,
    sample_gumbel,
    temperature,
)
from gumbel_vae.train import ANNEAL_EVERY, ANNEAL_RATE, TAU0, TAU_MIN, TrainConfig
from scipy.stats import chi2

from shared_utils.metrics import log_mean_exp

torch.set_num_threads(1)  # the course machine's cores are shared

EULER_GAMMA = 0.5772156649015329


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gumbel_noise_has_the_gumbel_mean_and_variance():
    n = 200_000
    g = sample_gumbel((n,), _gen(0), dtype=torch.float64)
    assert torch.isfinite(g).all()
    var = math.pi**2 / 6
    assert abs(g.mean().item() - EULER_GAMMA) < 4 * math.sqrt(var / n)
    assert g.var().item() == pytest.approx(var, rel=0.02)


def test_gumbel_max_frequencies_match_the_categorical_probabilities():
    """Jang Eq. 1 and the argmax of Eq. 2 (any tau): chi-square test of the class counts."""
    pi = torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4], dtype=torch.float64)
    n = 40_000
    g = sample_gumbel((n, 5), _gen(1), dtype=torch.float64)
    z = gumbel_max(pi.log(), g)
    assert torch.equal(z.sum(-1), torch.ones(n, dtype=torch.float64))  # one-hot rows
    for tau in (0.1, 1.0, 5.0):  # the argmax of y does not depend on tau: it is Eq. 1's sample
        assert torch.equal(gumbel_softmax(pi.log(), tau, g).argmax(-1), z.argmax(-1))
    counts = z.sum(0)
    statistic = ((counts - n * pi) ** 2 / (n * pi)).sum().item()
    assert statistic < chi2.ppf(0.9999, df=4)
    # and the test has power: the counts are far from another categorical
    other = torch.tensor([0.1, 0.1, 0.1, 0.3, 0.4], dtype=torch.float64)
    assert ((counts - n * other) ** 2 / (n * other)).sum().item() > chi2.ppf(0.9999, df=4)


def test_gumbel_softmax_lies_on_the_simplex_and_tends_to_one_hot_as_tau_falls():
    pi = torch.tensor([0.2, 0.5, 0.3])
    g = sample_gumbel((5000, 3), _gen(2))
    mean_max = []
    for tau in (10.0, 1.0, 0.5, 0.1, 0.01):
        y = gumbel_softmax(pi.log(), tau, g)
        assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(5000))
        mean_max.append(y.max(-1).values.mean().item())
    assert all(a < b for a, b in zip(mean_max, mean_max[1:], strict=False))  # sharper as tau falls
    assert mean_max[0] < 0.5 and mean_max[-1] > 0.99
    y = gumbel_softmax(pi.log(), 0.01, g)
    one_hot = gumbel_max(pi.log(), g)
    assert (y - one_hot).abs().max(-1).values.median() < 1e-3  # y -> the Eq. 1 sample


def test_gumbel_softmax_as_tau_grows_tends_to_the_uniform_point():
    g = sample_gumbel((100, 4), _gen(3))
    y = gumbel_softmax(torch.tensor([0.1, 0.2, 0.3, 0.4]).log(), 1e4, g)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-3)


def test_straight_through_forward_is_the_one_hot_backward_is_the_soft_gradient():
    """Jang Sec. 2.2: the value is one_hot(argmax y), the gradient that of the relaxed y."""
    logits = torch.randn(6, 4, 5, generator=_gen(4))
    g = sample_gumbel(logits.shape, _gen(5))
    weights = torch.randn(6, 4, 5, generator=_gen(6))  # a downstream function f(y) = <w, y>^2
    grads, values = {}, {}
    for hard in (False, True):
        leaf = logits.clone().requires_grad_(True)
        y = gumbel_softmax(leaf, 0.7, g, hard=hard)
        values[hard] = y.detach()
        ((weights * y).sum() ** 2).backward()
        grads[hard] = leaf.grad
    assert torch.equal(values[True], gumbel_max(logits, g))  # forward: exactly the hard one-hot
    assert torch.allclose(values[True], F.one_hot(values[False].argmax(-1), 5).float())
    # backward: the soft sample's Jacobian, applied to df/dy evaluated at the *hard* value
    leaf = logits.clone().requires_grad_(True)
    y_soft = gumbel_softmax(leaf, 0.7, g)
    upstream = 2 * (weights * values[True]).sum() * weights
    (expected,) = torch.autograd.grad(y_soft, leaf, grad_outputs=upstream)
    assert torch.allclose(grads[True], expected, atol=1e-6)
    assert not torch.allclose(grads[True], grads[False])  # differs from the relaxed gradient


def test_straight_through_gradient_equals_soft_gradient_for_a_linear_loss():
    logits = torch.randn(3, 7, generator=_gen(7))
    g = sample_gumbel(logits.shape, _gen(8))
    w = torch.randn(3, 7, generator=_gen(9))
    grads = []
    for hard in (False, True):
        leaf = logits.clone().requires_grad_(True)
        (w * gumbel_softmax(leaf, 0.5, g, hard=hard)).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1])


def test_categorical_kl_matches_a_direct_sum_over_all_joint_categories():
    """KL(q(z) || p(z)) for q = prod_n Cat(pi_n) and a uniform p, summed over all K^N codes."""
    n_latents, k = 3, 4
    logits = torch.randn(2, n_latents, k, generator=_gen(10), dtype=torch.float64)
    pi = torch.softmax(logits, -1)
    expected = []
    for b in range(2):
        total = 0.0
        for code in itertools.product(range(k), repeat=n_latents):
            q = math.prod(pi[b, n, c].item() for n, c in enumerate(code))
            total += q * (math.log(q) - math.log(k**-n_latents))
        expected.append(total)
    assert categorical_kl_uniform(logits).tolist() == pytest.approx(expected, rel=1e-10)
    # zero for the uniform posterior, log K per variable for a one-hot one
    assert categorical_kl_uniform(torch.zeros(1, 5, k)).abs().item() < 1e-6
    peaked = torch.full((1, 5, k), -1e4)
    peaked[..., 0] = 0.0
    assert categorical_kl_uniform(peaked).item() == pytest.approx(5 * math.log(k), rel=1e-5)


def test_temperature_schedule_is_jang_et_al():
    """tau = max(0.5, exp(-r t)) updated every N steps, with the constants train.py names."""
    assert (TAU0, TAU_MIN, ANNEAL_RATE, ANNEAL_EVERY) == (1.0, 0.5, 1e-4, 1000)
    cfg = TrainConfig()
    assert (cfg.tau0, cfg.tau_min, cfg.anneal_rate, cfg.anneal_every) == (1.0, 0.5, 1e-4, 1000)
    assert temperature(0) == 1.0 and temperature(999) == 1.0  # constant within N steps
    assert temperature(1000) == pytest.approx(math.exp(-0.1))
    assert temperature(2999) == pytest.approx(math.exp(-0.2))
    assert temperature(6000) == pytest.approx(math.exp(-0.6))
    assert temperature(7000) == 0.5 and temperature(10**6) == 0.5  # exp(-0.7) < 0.5: the floor
    taus = [temperature(t) for t in range(0, 20_000, 250)]
    assert all(a >= b for a, b in zip(taus, taus[1:], strict=False))
    assert temperature(12_345, tau0=0.5, rate=0.0) == 0.5  # rate 0: a fixed temperature


def _tiny_model(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    model = Model(num_latents=2, num_classes=3, hidden=[16, 8]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # a peaked posterior and decoder: bounds far from each other
    return model


def _exact_log_px(model: Model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log sum_z p(z) p(x | z) by enumerating all K^N codes: [B]."""
    n, k = model.num_latents, model.num_classes
    codes = torch.tensor(list(itertools.product(range(k), repeat=n)))
    z = F.one_hot(codes, k).double()  # [K^N, N, K]
    logits = model.decode(z)[:, None, :].expand(-1, x.shape[0], -1)  # [K^N, B, 784]
    log_px_z = model.log_px(x.reshape(x.shape[0], -1), logits)
    return torch.logsumexp(log_px_z, dim=0) - n * math.log(k)


def test_iwae_bound_of_the_discrete_model_below_exact_likelihood_and_rising_with_k():
    model = _tiny_model()
    x = torch.bernoulli(torch.full((4, 784), 0.3, dtype=torch.float64), generator=_gen(11))
    exact = _exact_log_px(model, x)
    torch.manual_seed(12)
    log_w = model.log_weights(x, 4000).detach()  # [4000, B]
    # E[L_k] from 4000 / k independent groups of k samples each
    bounds = {k: log_mean_exp(log_w.view(4000 // k, k, -1), dim=1).mean(0) for k in (1, 10, 100)}
    assert (bounds[1] < bounds[10]).all() and (bounds[10] < bounds[100]).all()
    # E[L_k] <= log p(x); the 40-group mean of L_100 may overshoot it by its standard error
    assert (bounds[100] <= exact + 0.05).all() and (bounds[1] < exact - 0.5).all()
    # the mean importance weight is unbiased for p(x): L_k -> log p(x) for the whole sample
    assert log_mean_exp(log_w, dim=0).tolist() == pytest.approx(exact.tolist(), abs=0.05)
    # evaluate(): its ELBO lies below its IWAE bound, and its NLL is close to -log p(x)
    torch.manual_seed(13)
    metrics = model.evaluate(x, k=500)
    assert (metrics["elbo"] < -metrics["nll_nats"]).all()
    assert metrics["nll_nats"].tolist() == pytest.approx((-exact).tolist(), abs=0.3)


def test_log_weights_use_exact_posterior_probabilities():
    """log q(z | x) in the weights is the categorical log-probability of the sampled code."""
    model = _tiny_model(1)
    x = torch.bernoulli(torch.full((3, 784), 0.5, dtype=torch.float64), generator=_gen(14))
    torch.manual_seed(15)
    log_w = model.log_weights(x, 5)
    torch.manual_seed(15)
    log_pi = torch.log_softmax(model.encode(x), -1)
    z = gumbel_max(log_pi, sample_gumbel((5, *log_pi.shape), None, torch.float64))
    log_q = (z * log_pi).sum((-1, -2))
    expected = model.log_px(x, model.decode(z)) - 2 * math.log(3) - log_q
    assert torch.allclose(log_w, expected)


def test_relaxed_elbo_is_reconstruction_minus_closed_form_kl():
    model = _tiny_model(2)
    x = torch.bernoulli(torch.full((5, 784), 0.4, dtype=torch.float64), generator=_gen(16))
    out = model.relaxed_elbo(x, tau=0.5, generator=_gen(17))
    assert torch.allclose(out["elbo"], out["recon"] - out["kl"])
    assert torch.allclose(out["kl"], categorical_kl_uniform(model.encode(x)))
    # with hard=True the reconstruction term is evaluated at the exact (Gumbel-Max) sample
    hard = model.relaxed_elbo(x, tau=0.5, hard=True, generator=_gen(17))
    logits = model.encode(x)
    z = gumbel_max(logits, sample_gumbel(logits.shape, _gen(17), torch.float64))
    assert torch.allclose(hard["recon"], model.log_px(x, model.decode(z)))


@pytest.mark.parametrize("hard", [False, True])
def test_both_estimators_train_the_encoder_and_lower_the_loss(hard):
    torch.manual_seed(0)
    model = Model(num_latents=8, num_classes=4, hidden=[64, 32])
    patterns = torch.bernoulli(torch.full((4, 784), 0.5), generator=_gen(18))
    x = patterns.repeat(8, 1)  # 4 images, each 8 times: a code per image pays
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(60):
        loss = model.loss(x, tau=temperature(step, rate=1e-2, every=10), hard=hard)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert model.encoder[0].weight.grad.abs().sum() > 0  # gradient reaches q(z|x)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_samples_and_reconstructions_are_images():
    model = _tiny_model().float()
    samples = model.sample(7, generator=_gen(20))
    assert samples.shape == (7, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, model.sample(7, generator=_gen(20)))
    recon = model.reconstruct(torch.rand(3, 1, 28, 28))
    assert recon.shape == (3, 1, 28, 28)
