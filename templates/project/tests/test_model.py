"""Unit tests of the model's likelihood (eqs. 1-3 of model.py) and of the training loop.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import math

import pytest
import torch
from __slug__ import IndependentBernoulli, train
from __slug__.train import train_steps

from shared_utils.checkpoints import load_checkpoint


def test_nll_is_sum_of_per_pixel_bernoulli_nlls():
    gen = torch.Generator().manual_seed(0)
    model = IndependentBernoulli(num_pixels=6)
    with torch.no_grad():
        model.logits.copy_(torch.randn(6, generator=gen))
    x = torch.bernoulli(torch.full((4, 6), 0.5), generator=gen)
    p = torch.sigmoid(model.logits).tolist()
    expected = [
        -sum(math.log(p[i]) if xi else math.log(1 - p[i]) for i, xi in enumerate(row))
        for row in x.tolist()
    ]
    assert model.nll(x).tolist() == pytest.approx(expected, rel=1e-5)


def test_closed_form_fit_is_the_pixel_mean_and_a_minimum():
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(500, 10, generator=gen) * 0.8 + 0.1
    model = IndependentBernoulli.fit(probs)
    torch.testing.assert_close(torch.sigmoid(model.logits), probs.mean(0), atol=1e-5, rtol=0)
    loss = model.nll(probs).mean()  # E_x[NLL] is linear in x, so the mean image suffices
    loss.backward()
    assert model.logits.grad.abs().max() < 1e-4


def test_samples_are_binary_images():
    model = IndependentBernoulli()
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28)
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_training_lowers_the_nll_and_is_reproducible():
    images = (torch.rand(64, 28, 28, generator=torch.Generator().manual_seed(2)) * 255).byte()
    logs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(0)
        model = IndependentBernoulli()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        logs.append(train_steps(model, opt, images, 20, 16, gen))
    assert logs[0] == logs[1]
    assert logs[0][-1]["nll"] < logs[0][0]["nll"]


def test_train_command_resumes_exactly(tmp_path, monkeypatch):
    """2 steps + --resume to 4 steps gives the same weights as 4 steps in one go (smoke data)."""
    monkeypatch.setenv("DGM_SMOKE", "1")
    common = ["--batch-size", "8", "--save-every", "2"]
    assert train.main(["--steps", "4", "--out", str(tmp_path / "a.safetensors"), *common]) == 0
    b = str(tmp_path / "b.safetensors")
    assert train.main(["--steps", "2", "--out", b, *common]) == 0
    assert train.main(["--steps", "4", "--out", b, "--resume", *common]) == 0
    a_ckpt = load_checkpoint(tmp_path / "a.safetensors")
    b_ckpt = load_checkpoint(b)
    assert b_ckpt.step == 4
    torch.testing.assert_close(a_ckpt.state_dict["logits"], b_ckpt.state_dict["logits"])
    missing = str(tmp_path / "missing.safetensors")
    assert train.main(["--steps", "4", "--out", missing, "--resume"]) == 2
