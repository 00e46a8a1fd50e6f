"""Tests of the paper's math: SGLD, the replay buffer, JEM's energy and classifier, the metrics,
the divergence stop and the resumed buffer.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import math

import pytest
import torch
from jem import objective as obj
from jem import train as train_module
from jem.metrics import auroc, ece, reliability, roc_curve
from jem.model import Model, to_image_range, to_model_range
from jem.sgld import ReplayBuffer, sgld
from jem.train import TrainConfig, check_divergence, train

from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.runs import RunError
from shared_utils.testing import assert_last_save_kept, assert_same_run, nan_on_call

torch.set_num_threads(1)


# -- SGLD ----------------------------------------------------------------------------------------


def test_sgld_samples_a_gaussian_energy():
    """E(x) = |x - mu|^2 / (2 s^2): with step eta and noise sqrt(2 eta) (JEM Eq. 11) the chain
    is AR(1), x' = (1 - eta/s^2) x + ..., whose stationary law is N(mu, s^2 / (1 - eta/(2 s^2)))
    (close to the target N(mu, s^2) for a small step). 4000 seeded chains after 600 steps: the
    sample mean within 4 standard errors of mu, the variance within 4 of its own."""
    mu, s = torch.tensor([1.5, -2.0]), 0.7
    eta = 0.02 * s**2
    gen = torch.Generator().manual_seed(0)
    x0 = 3.0 * torch.randn(4000, 2, generator=gen)  # far from the target
    x = sgld(
        lambda z: ((z - mu) ** 2).sum(1) / (2 * s**2),
        x0,
        steps=600,
        step_size=eta,
        noise=math.sqrt(2 * eta),
        generator=gen,
        bounds=None,
    )
    var = s**2 / (1 - eta / (2 * s**2))
    n = x.shape[0]
    assert torch.allclose(x.mean(0), mu, atol=4 * math.sqrt(var / n))
    assert torch.allclose(x.var(0), torch.tensor(var), atol=4 * var * math.sqrt(2 / (n - 1)))
    assert abs(var - s**2) / s**2 < 0.02  # and that is the target within 2 %


def test_sgld_without_noise_descends_the_energy_and_stays_in_bounds():
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(64, 3, generator=gen) * 2 - 1
    energy = lambda z: ((z - 0.3) ** 2).sum(1)  # noqa: E731
    x = sgld(energy, x0, steps=50, step_size=0.1, noise=0.0, generator=gen)
    assert (energy(x) <= energy(x0) + 1e-6).all()
    assert torch.allclose(x, torch.full_like(x, 0.3), atol=1e-3)
    far = sgld(lambda z: -(z**2).sum(1) * 100, x0, 5, 1.0, 0.01, gen)  # pushed outwards
    assert far.min() >= -1 and far.max() <= 1


# -- the replay buffer ----------------------------------------------------------------------------


def test_replay_buffer_sizes_reinit_fraction_and_write_back():
    gen = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(200, (1, 4, 4), reinit=0.05, generator=gen)
    assert buffer.samples.shape == (200, 1, 4, 4)
    assert buffer.samples.min() >= -1 and buffer.samples.max() <= 1
    # mark the buffer so that a start point from it is recognisable: all entries = 5
    buffer.samples.fill_(5.0)
    n = 20_000
    start, indices, fresh = buffer.draw(n, gen)
    assert start.shape == (n, 1, 4, 4) and indices.shape == (n,) and fresh.shape == (n,)
    from_buffer = (start == 5.0).flatten(1).all(1)
    assert torch.equal(from_buffer, ~fresh)  # fresh chains are noise, the others buffer entries
    assert start[fresh].abs().max() <= 1
    p = fresh.float().mean().item()
    assert abs(p - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n)  # the reinitialisation fraction rho
    assert indices.min() >= 0 and indices.max() < 200
    # write-back: the chains' ends land at their indices, the rest is untouched
    idx = torch.tensor([3, 7, 11])
    ends = torch.full((3, 1, 4, 4), -0.25)
    buffer.write_back(idx, ends)
    assert (buffer.samples[idx] == -0.25).all()
    mask = torch.ones(200, dtype=torch.bool)
    mask[idx] = False
    assert (buffer.samples[mask] == 5.0).all()
    with pytest.raises(ValueError):
        ReplayBuffer(10, (1, 4, 4), reinit=1.5)


def test_draw_negatives_writes_the_chains_back():
    torch.manual_seed(0)
    model = Model(width=2)
    gen = torch.Generator().manual_seed(0)
    buffer = obj.new_buffer(50, reinit=0.0, generator=gen)
    before = buffer.samples.clone()
    state = gen.get_state()
    _, indices, _ = buffer.draw(8, gen)
    gen.set_state(state)  # draw_negatives draws the same indices
    samples = obj.draw_negatives(model, buffer, 8, gen, steps=3, step_size=1.0, noise=0.01)
    assert torch.equal(buffer.samples[indices], samples)
    assert not torch.equal(before[indices], samples)  # the chains moved
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[indices] = False
    assert torch.equal(buffer.samples[untouched], before[untouched])


# -- JEM's energy and classifier -------------------------------------------------------------------


def _model64(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(width=4).double()


def test_energy_is_minus_log_of_the_unnormalised_marginal():
    """E(x) = -LogSumExp_y f(x)[y] = -log sum_y exp(f(x)[y]) (JEM Eqs. 6-7), by direct sums."""
    model = _model64()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64) * 2 - 1
    f = model(x)
    by_hand = -torch.tensor(
        [math.log(sum(math.exp(v) for v in row)) for row in f.tolist()], dtype=torch.float64
    )
    assert torch.allclose(model.energy(x), by_hand.double(), rtol=1e-12, atol=1e-12)
    assert torch.allclose(model.log_px_unnormalised(x), -by_hand.double(), atol=1e-12)
    one = Model(num_classes=1, width=4).double()
    assert torch.allclose(one.energy(x), -one(x)[:, 0])  # K = 1: IGEBM's scalar energy


def test_classifier_part_is_the_plain_softmax():
    """p(y|x) = p(x, y) / p(x) = exp(f[y]) / sum exp(f) (JEM Eq. 8): Z cancels; the loss is the
    cross-entropy of that softmax."""
    model = _model64(1)
    x = torch.rand(5, 1, 28, 28, dtype=torch.float64) * 2 - 1
    y = torch.tensor([0, 3, 9, 2, 2])
    f = model(x)
    log_z = 7.3  # any normaliser
    log_joint = f - log_z  # log p(x, y) (JEM Eq. 5)
    log_marginal = -model.energy(x) - log_z  # log p(x) (JEM Eq. 6)
    p_y_given_x = torch.exp(log_joint - log_marginal[:, None])
    assert torch.allclose(p_y_given_x, torch.softmax(f, dim=1), atol=1e-12)
    ce = -torch.log(p_y_given_x[torch.arange(5), y]).mean()
    assert torch.allclose(model.loss(x, y), ce, atol=1e-12)
    metrics = model.evaluate(x, y)
    assert torch.allclose(metrics["confidence"], p_y_given_x.max(1).values)


def test_hybrid_loss_is_cross_entropy_plus_regularised_contrastive_divergence():
    model = _model64(2)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    x_neg = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.tensor([1, 2, 3, 4])
    e_pos, e_neg = model.energy(x), model.energy(x_neg)
    gen_loss = e_pos.mean() - e_neg.mean() + 0.3 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    loss, stats = obj.hybrid_loss(model, x, y, x_neg, 0.3, "jem")
    assert torch.allclose(loss, model.loss(x, y) + gen_loss, atol=1e-10)
    loss_c, _ = obj.hybrid_loss(model, x, y, x_neg, 0.3, "classifier")
    assert torch.allclose(loss_c, model.loss(x, y), atol=1e-12)
    loss_g, _ = obj.hybrid_loss(model, x, None, x_neg, 0.3, "igebm")
    assert torch.allclose(loss_g, gen_loss, atol=1e-10)
    assert stats["e_data"] == pytest.approx(e_pos.mean().item())
    assert stats["e_samples"] == pytest.approx(e_neg.mean().item())


def test_jem_loss_decreases_on_a_tiny_batch_with_fixed_negatives():
    torch.manual_seed(0)
    model = Model(width=4)
    gen = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(16, 1, 28, 28, generator=gen) - 1  # dark "data"
    x_neg = torch.rand(16, 1, 28, 28, generator=gen) * 2 - 1  # uniform noise as negatives
    y = torch.randint(0, 10, (16,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss, _ = obj.hybrid_loss(model, x, y, x_neg, 0.1, "jem")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    e_data, e_neg = model.energy(x).mean(), model.energy(x_neg).mean()
    assert e_data < e_neg  # data pushed to lower energy than the negatives


def test_image_range_round_trip():
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(to_image_range(to_model_range(x)), x, atol=1e-7)


# -- metrics --------------------------------------------------------------------------------------


def test_ece_against_a_hand_computation():
    """Four bins of width 0.25. Confidences 0.1 (bin 0), 0.3, 0.4 (bin 1), 0.8, 0.9, 1.0 (bin 3).
    bin 0: acc 0, conf 0.1 -> |0 - 0.1| = 0.1, weight 1/6
    bin 1: acc 1/2, conf 0.35 -> 0.15, weight 2/6
    bin 3: acc 2/3, conf 0.9 -> 0.2333, weight 3/6
    ECE = (0.1 + 0.3 + 0.7) / 6 = 0.18333..."""
    conf = torch.tensor([0.1, 0.3, 0.4, 0.8, 0.9, 1.0], dtype=torch.float64)
    correct = torch.tensor([0, 1, 0, 1, 1, 0])
    assert ece(conf, correct, bins=4) == pytest.approx(1.1 / 6, abs=1e-12)
    r = reliability(conf, correct, bins=4)
    assert r["count"].tolist() == [1, 2, 0, 3]
    assert r["accuracy"][3].item() == pytest.approx(2 / 3)
    # a bin's upper edge belongs to it: 0.25 is in bin 0, 0.0 too
    assert reliability(torch.tensor([0.0, 0.25, 0.2501]), torch.ones(3), 4)["count"].tolist() == [
        2,
        1,
        0,
        0,
    ]
    assert ece(torch.ones(10), torch.ones(10)) == 0.0  # confident and always right


def test_auroc_against_the_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    s_in = torch.randint(0, 8, (60,), generator=gen).double()  # many ties
    s_out = torch.randint(0, 6, (45,), generator=gen).double()
    pairs = (s_in[:, None] > s_out[None, :]).double() + 0.5 * (s_in[:, None] == s_out[None, :])
    assert auroc(s_in, s_out) == pytest.approx(pairs.mean().item(), abs=1e-12)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    fpr, tpr = roc_curve(s_in + 0.01 * torch.randn(60, generator=gen, dtype=torch.float64), s_out)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    area = torch.trapezoid(tpr, fpr).item()
    assert 0 < area < 1


# -- training: divergence stop, resumed buffer ---------------------------------------------------


def _cfg(out, **kw) -> TrainConfig:
    settings = dict(limit_train=200, batch_size=20, eval_n=20, epochs=2, save_every=3)
    return TrainConfig(
        out=out,
        log_every=3,
        quiet=True,
        width=4,
        buffer_size=40,
        sgld_steps=2,
        eval_every=0,
        **settings,
        **kw,
    )


def test_divergence_detector_thresholds():
    check_divergence(5, {"e_data": -3.0, "e_samples": 2.0, "loss": 0.1}, 100.0, "runs/x")
    with pytest.raises(RunError, match="diverged at step 5.*e_samples"):
        check_divergence(5, {"e_data": -3.0, "e_samples": 2e3}, 100.0, "runs/x")
    with pytest.raises(RunError, match="loss = nan"):
        check_divergence(5, {"loss": float("nan")}, 100.0, "runs/x")


def test_blown_up_energies_stop_the_run_and_keep_the_last_good_save(tmp_path, monkeypatch):
    """At step 5 the energies of the samples blow up: the run stops with a one-line error before
    saving step 5; last.safetensors is the save of step 3 and loads."""
    real = obj.hybrid_loss
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            stats = {**stats, "e_samples": 1e6}
        return loss, stats

    monkeypatch.setattr(obj, "hybrid_loss", exploding)
    out = tmp_path / "run"
    with pytest.raises(RunError, match="diverged at step 5") as err:
        train(_cfg(out))
    assert "\n" not in str(err.value)
    assert_last_save_kept(out, 3)
    model = load_model(out / "last.safetensors", Model)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.isfinite(model.energy(x)).all()


def test_a_nan_loss_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(obj, "hybrid_loss", nan_on_call(obj.hybrid_loss, 4))
    out = tmp_path / "run"
    with pytest.raises(RunError, match="diverged at step 4"):
        train(_cfg(out))
    assert_last_save_kept(out, 3)


def test_resume_restores_the_replay_buffer(tmp_path):
    """A run stopped at step 4 and resumed equals the straight run, replay buffer included, and
    the saved buffer holds SGLD samples written back (not the initial noise)."""
    train(_cfg(tmp_path / "straight", max_steps=7))
    train(_cfg(tmp_path / "stopped", max_steps=4))
    train(_cfg(tmp_path / "stopped", resume=True, max_steps=7))
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    ckpt = load_checkpoint(tmp_path / "straight" / "last.safetensors", load_train_state=True)
    saved = ckpt.train_state["objects"]["buffer"]["samples"]
    fresh = obj.new_buffer(40, 0.05, torch.Generator().manual_seed(0 + 0x9E3779B9)).samples
    assert saved.shape == (40, 1, 28, 28)
    changed = (saved != fresh).flatten(1).any(1)
    assert changed.sum() >= 20  # 7 steps x 20 chains written back into 40 entries


def test_train_module_uses_the_objective_module():
    assert train_module.obj is obj  # the divergence tests patch objective.hybrid_loss


def test_an_unconditional_igebm_trains_and_evaluates(tmp_path, capsys):
    """--objective igebm with one output: L_gen alone; evaluate reports only log p(x)'s AUROC."""
    from jem import evaluate as evaluate_command

    ship = tmp_path / "igebm.safetensors"
    train(_cfg(tmp_path / "run", objective="igebm", num_classes=1, energy_reg=1.0, ship=ship))
    assert evaluate_command.main([str(ship), "--eval-n", "20", "--write"]) == 0
    metrics = load_checkpoint(ship).metrics
    assert "auroc_log_px_first20" in metrics and "accuracy_first20" not in metrics
    with pytest.raises(RunError, match="num-classes"):
        train(_cfg(tmp_path / "bad", objective="jem", num_classes=1))
