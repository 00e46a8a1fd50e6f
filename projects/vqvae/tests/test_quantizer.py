"""The vector quantiser (quantizer.py): Eq. 1-3, the straight-through estimator, the EMA update
of appendix A.1 and the dead-code restarts.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import math

import pytest
import torch
from vqvae.model import TEST_CONFIG, Model
from vqvae.quantizer import VectorQuantizer, nearest_code, usage_and_perplexity

torch.set_num_threads(1)


def _quantizer(ema: bool = False, k: int = 8, d: int = 3, seed: int = 0) -> VectorQuantizer:
    torch.manual_seed(seed)
    vq = VectorQuantizer(k, d, ema=ema, gamma=0.9)
    with torch.no_grad():
        vq.embedding.copy_(torch.randn(k, d))
        if ema:
            vq.ema_sum.copy_(vq.embedding)
    return vq


def test_forward_is_the_nearest_code():
    vq = _quantizer().eval()
    z_e = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    out = vq(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    brute = torch.cdist(flat, vq.embedding).argmin(1)  # Eq. 1 by brute force
    assert torch.equal(out["codes"].flatten(), brute)
    expected = vq.embedding[brute].reshape(2, 4, 5, 3).permute(0, 3, 1, 2)  # Eq. 2
    assert torch.allclose(out["z_q"], expected, atol=1e-6)
    assert torch.equal(nearest_code(flat, vq.embedding), brute)


def test_backward_is_the_identity_to_the_encoder_output():
    """Section 3.2: the decoder's gradient at z_q is copied unchanged onto z_e."""
    vq = _quantizer().eval()
    z_e = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    upstream = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad((vq(z_e)["z_q"] * upstream).sum(), z_e)
    assert torch.equal(grad, upstream)


def test_the_loss_terms_of_eq3():
    vq = _quantizer().eval()
    z_e = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    out = vq(z_e)
    expected = (out["z_q"] - z_e).pow(2).mean()
    assert out["codebook_loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["commitment_loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def _grads(model: Model, term: str) -> dict[str, bool]:
    """Which parts of the model receive a nonzero gradient from ``term`` of Eq. 3."""
    model.zero_grad(set_to_none=True)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    model.loss_terms(x)[term].backward()

    def reached(prefix: str) -> bool:
        return any(
            p.grad is not None and p.grad.abs().sum() > 0
            for name, p in model.named_parameters()
            if name.startswith(prefix)
        )

    return {part: reached(part) for part in ("encoder", "quantizer", "decoder", "prior")}


def test_commitment_gradient_reaches_only_the_encoder_and_codebook_loss_only_the_codebook():
    torch.manual_seed(0)
    model = Model(**TEST_CONFIG).eval()
    with torch.no_grad():  # codes at the scale of the encoder outputs, so that several are used
        model.quantizer.embedding.normal_()
    commit = _grads(model, "commit")
    assert commit == {"encoder": True, "quantizer": False, "decoder": False, "prior": False}
    codebook = _grads(model, "codebook")
    assert codebook == {"encoder": False, "quantizer": True, "decoder": False, "prior": False}
    recon = _grads(model, "recon")  # through the straight-through estimator: encoder too
    assert recon == {"encoder": True, "quantizer": False, "decoder": True, "prior": False}


def test_ema_update_equals_its_closed_form_on_a_toy_assignment():
    """Appendix A.1, Eq. 6-8, for K = 3 codes in D = 2 and a hand-made assignment."""
    gamma = 0.9
    vq = VectorQuantizer(3, 2, ema=True, gamma=gamma).train()
    e0 = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    with torch.no_grad():
        vq.embedding.copy_(e0)
        vq.ema_sum.copy_(e0)  # N_i = 1, m_i = e_i before the update
    z_e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [-1.0, -1.0]])  # codes 0, 0, 1, 0
    out = vq(z_e.reshape(1, 2, 2, 2).permute(0, 3, 1, 2))  # [1, D, 2, 2], rows in raster order
    assert out["codes"].flatten().tolist() == [0, 0, 1, 0]
    n = torch.tensor([3.0, 1.0, 0.0])
    sums = torch.stack([z_e[[0, 1, 3]].sum(0), z_e[2], torch.zeros(2)])
    count = gamma * 1.0 + (1 - gamma) * n  # Eq. 6
    m = gamma * e0 + (1 - gamma) * sums  # Eq. 7
    assert torch.allclose(vq.ema_count, count)
    assert torch.allclose(vq.ema_sum, m)
    assert torch.allclose(vq.embedding, m / count[:, None])  # Eq. 8
    assert torch.allclose(vq.embedding[2], e0[2])  # an unused code does not move
    vq.eval()
    before = vq.embedding.clone()
    vq(torch.randn(1, 2, 2, 2))
    assert torch.equal(vq.embedding, before)  # no update in evaluation mode


def test_restart_gives_dead_codes_encoder_outputs_and_keeps_the_used_ones():
    vq = _quantizer(k=6, d=2).train()
    z_e = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(6))
    codes = vq(z_e)["codes"].flatten()
    used = set(codes.tolist())
    before = vq.embedding.detach().clone()
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    restarted = vq.restart_dead_codes(flat, torch.Generator().manual_seed(0))
    assert restarted == 6 - len(used) > 0
    for k in range(6):
        if k in used:
            assert torch.equal(vq.embedding[k], before[k])
        else:  # now exactly one of the encoder outputs
            assert (vq.embedding[k] == flat).all(1).any()
    assert vq.usage.sum() == 0


def test_usage_and_perplexity():
    codes = torch.tensor([0, 1, 2, 3] * 5)
    assert usage_and_perplexity(codes, 16) == (4, pytest.approx(4.0))
    used, perplexity = usage_and_perplexity(torch.tensor([0, 0, 0, 1]), 8)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert used == 2 and perplexity == pytest.approx(math.exp(entropy))


def test_restarts_never_pick_encoder_outputs_the_codebook_already_covers():
    """Rows at distance 0 from their nearest code have weight 0 in the k-means++-style draw."""
    vq = VectorQuantizer(4, 2).train()
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0], [-9.0, 9.0]]))
    covered = torch.zeros(6, 2)  # on code 0: "background"
    novel = torch.tensor([[3.0, -3.0], [-4.0, -4.0]])
    z_e = torch.cat([covered, novel])
    for seed in range(5):
        vq.usage.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
        vq.restart_dead_codes(z_e, torch.Generator().manual_seed(seed))
        for k in (1, 2, 3):
            assert (vq.embedding[k] == novel).all(1).any()
        with torch.no_grad():
            vq.embedding[1:] = torch.tensor([[5.0, 5.0], [9.0, 9.0], [-9.0, 9.0]])
