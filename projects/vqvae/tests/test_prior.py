"""The prior over the code grid (prior.py): autoregressive, normalised, and sampled exactly.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import itertools

import torch
from vqvae.prior import TransformerPrior

torch.set_num_threads(1)


def _prior(k: int = 5, length: int = 9, seed: int = 0) -> TransformerPrior:
    torch.manual_seed(seed)
    prior = TransformerPrior(k, length, dim=16, layers=2, heads=2).double().eval()
    with torch.no_grad():  # weights unlike the initial ones (the positions start near zero)
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior


def test_output_l_depends_only_on_codes_before_l():
    """The gradient of each output position with respect to each input position: the output l
    (predicting z_l) reads inputs 0..l, i.e. the start token and z_1..z_{l-1}, nothing after."""
    prior, length = _prior(), 9
    z = torch.randint(0, 5, (1, length), generator=torch.Generator().manual_seed(1))
    h = prior.inputs(z).detach().requires_grad_(True)
    out = prior.trunk(h)
    depends = torch.zeros(length, length, dtype=torch.bool)
    for l in range(length):  # noqa: E741
        (g,) = torch.autograd.grad(out[0, l].sum(), h, retain_graph=True)
        depends[l] = g[0].abs().sum(1) > 0
    assert torch.equal(depends, torch.ones(length, length).tril().bool())


def test_changing_a_later_code_leaves_earlier_conditionals_unchanged():
    prior = _prior()
    z = torch.randint(0, 5, (1, 9), generator=torch.Generator().manual_seed(2))
    for m in range(9):
        changed = z.clone()
        changed[0, m] = (z[0, m] + 1) % 5
        a, b = prior.logits(z), prior.logits(changed)
        assert torch.equal(a[:, : m + 1], b[:, : m + 1])  # p(z_l | z_<l) for l <= m
        if m < 8:
            assert not torch.allclose(a[:, m + 1], b[:, m + 1])


def test_probabilities_of_all_sequences_sum_to_one():
    prior = _prior(k=3, length=3)
    z = torch.tensor(list(itertools.product(range(3), repeat=3)))
    assert torch.isclose(torch.exp(-prior.nll(z)).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_cached_step_by_step_logits_equal_the_teacher_forced_ones():
    prior = _prior()
    z = torch.randint(0, 5, (3, 9), generator=torch.Generator().manual_seed(3))
    full = prior.logits(z)
    caches = [[] for _ in prior.blocks]
    previous = torch.full((3,), 5)
    for l in range(9):  # noqa: E741
        step = prior.next_logits(previous, l, caches)
        assert torch.allclose(step, full[:, l], atol=1e-10)
        previous = z[:, l]


def test_ancestral_samples_follow_the_model():
    """For L = 2 and K = 3, the empirical frequencies of 20,000 samples match p(z) (chi-square
    within a generous seeded bound)."""
    prior = _prior(k=3, length=2)
    z = torch.tensor(list(itertools.product(range(3), repeat=2)))
    p = torch.exp(-prior.nll(z))
    samples = prior.sample(20_000, generator=torch.Generator().manual_seed(4))
    counts = torch.bincount(samples[:, 0] * 3 + samples[:, 1], minlength=9).double()
    expected = 20_000 * p
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30.0, (counts, expected)  # 8 degrees of freedom: P(chi2 > 30) < 0.001
