"""The training loop: who each update changes, exact resume for the three GANs, divergence stops
before a save, and the train / evaluate / sample commands (with a stand-in for the FID)."""

from __future__ import annotations

import functools
import sys
import types

import pytest
import torch
from gans import dcgan
from gans import evaluate as evaluate_command
from gans import sample as sample_command
from gans.networks import Generator
from gans.train import (
    OBJECTIVES,
    TrainConfig,
    build,
    discriminator_step,
    generator_step,
    main,
    train,
    with_paper_defaults,
)

from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.runs import RunError
from shared_utils.testing import assert_last_save_kept, assert_resume_is_exact, nan_on_call
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared
GANS = tuple(OBJECTIVES)


def test_paper_defaults_fill_only_what_is_left_open():
    wgan = with_paper_defaults(TrainConfig(gan="wgan-gp"))
    assert (wgan.lr, wgan.beta1, wgan.beta2, wgan.n_critic) == (1e-4, 0.0, 0.9, 5)
    sn = with_paper_defaults(TrainConfig(gan="sngan", lr=1e-3, n_critic=2))
    assert (sn.lr, sn.beta1, sn.beta2, sn.n_critic) == (1e-3, 0.5, 0.999, 2)
    dc = with_paper_defaults(TrainConfig())
    assert (dc.gan, dc.lr, dc.beta1, dc.n_critic) == ("dcgan", 2e-4, 0.5, 1)


def _params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in net.named_parameters()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("gan", GANS)
def test_a_d_step_changes_only_d_and_a_g_step_only_g(gan):
    """Parameters only: batch-norm running statistics and SN's u, v are buffers that every
    forward pass in training mode updates, as in the papers' code."""
    cfg = with_paper_defaults(TrainConfig(gan=gan, width=4, z_dim=4))
    torch.manual_seed(0)
    G, D = build(cfg)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    options = {"lambda_gp": 10.0} if gan == "wgan-gp" else {}
    real = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    g0, d0 = _params(G), _params(D)
    logs = discriminator_step(G, D, opt_d, real, OBJECTIVES[gan], **options)
    g1, d1 = _params(G), _params(D)
    assert _same(g0, g1) and not _same(d0, d1) and torch.isfinite(logs["d_loss"])
    assert all(p.grad is None for p in G.parameters()) and not opt_g.state
    d_grads = [p.grad.clone() for p in D.parameters()]
    d_adam = {k: v.clone() for k, v in opt_d.state[next(D.parameters())].items()}
    g_loss = generator_step(G, D, opt_g, 8, OBJECTIVES[gan])
    g2, d2 = _params(G), _params(D)
    assert not _same(g1, g2) and _same(d1, d2) and torch.isfinite(g_loss)
    assert all(p.requires_grad for p in D.parameters())  # D is trainable again afterwards
    # the G step computed no gradient for D's weights and left D's optimizer alone
    assert all(torch.equal(p.grad, g) for p, g in zip(D.parameters(), d_grads, strict=True))
    state = opt_d.state[next(D.parameters())]
    assert all(torch.equal(state[k], v) for k, v in d_adam.items())


def _cfg(out, gan: str = "dcgan", **kw) -> TrainConfig:
    """4 steps per epoch (each n_critic minibatches of 10 images), 3 epochs; saves every 3 steps."""
    n_critic = 5 if gan == "wgan-gp" else 1
    settings = dict(
        gan=gan,
        limit_train=4 * 10 * n_critic,
        batch_size=10,
        width=4,
        z_dim=4,
        epochs=3,
        save_every=3,
        log_every=2,
        eval_every=0,
        quiet=True,
    )
    if gan == "dcgan":  # exercise the resumable counter of --d-loss-limit too
        settings.update(d_loss_limit=100.0, d_loss_patience=50)
    return TrainConfig(out=out, **{**settings, **kw})


@pytest.mark.parametrize("gan", GANS)
def test_resume_is_exact_after_max_steps_a_kill_and_minutes(gan, tmp_path, monkeypatch):
    """Stopped mid-epoch by --max-steps (at step 5), killed after step 8 (the last save: step 6)
    and stopped by --minutes, each resumed: bitwise the straight run (G, D, both optimizers, the
    EMA, SN's u and v, the RNGs, the logs)."""
    make = functools.partial(_cfg, gan=gan)
    assert_resume_is_exact(train, make, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)
    ckpt = load_checkpoint(tmp_path / "straight" / "last.safetensors", load_train_state=True)
    assert {"discriminator", "opt_g", "opt_d", "ema"} <= set(ckpt.train_state["objects"])
    columns = set(read_csv_log(tmp_path / "straight" / "log.csv")[0])
    assert {"d_loss", "g_loss"} <= columns
    if gan == "wgan-gp":
        assert {"wasserstein", "gradient_penalty"} <= columns


def test_a_nan_loss_stops_training_before_the_next_save(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dcgan, "generator_loss", nan_on_call(dcgan.generator_loss, call=5))
    out = tmp_path / "nan"
    with pytest.raises(RunError, match="diverged at step 5: g_loss = nan"):
        train(_cfg(out, save_every=2))
    assert_last_save_kept(out, step=4)
    # the command line: one line on stderr, exit code 1
    monkeypatch.setattr(dcgan, "generator_loss", nan_on_call(dcgan.generator_loss, call=3))
    argv = ["--limit-train", "40", "--batch-size", "10", "--width", "4", "--z-dim", "4"]
    assert main([*argv, "--eval-every", "0", "--quiet", "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step 3" in err[0]


def test_a_non_finite_weight_or_a_stuck_d_loss_stops_training(tmp_path, monkeypatch):
    original = dcgan.generator_loss
    calls = {"n": 0}

    def poisoned(D, fake):
        calls["n"] += 1
        loss = original(D, fake)
        if calls["n"] == 3:  # finite losses, but a weight of D blown up at step 3
            with torch.no_grad():
                D.net[0].bias[0] = float("inf")  # not saved by autograd: no version error
        return loss

    monkeypatch.setattr(dcgan, "generator_loss", poisoned)
    with pytest.raises(RunError, match="diverged at step 3: a weight of G or D"):
        train(_cfg(tmp_path / "inf", save_every=2))
    assert load_checkpoint(tmp_path / "inf" / "last.safetensors").step == 2
    monkeypatch.setattr(dcgan, "generator_loss", original)
    with pytest.raises(RunError, match="d_loss above 0 for 3 steps"):
        train(_cfg(tmp_path / "stuck", d_loss_limit=0.0, d_loss_patience=3))


@pytest.fixture
def fake_sample_quality(monkeypatch):
    """A stand-in for shared_utils.sample_quality (its feature network is not needed here)."""
    calls: list[tuple[str, int, str]] = []

    def check(samples: torch.Tensor, dataset: str, what: str) -> float:
        assert samples.shape[1:] == (1, 28, 28) and 0 <= samples.min() <= samples.max() <= 1
        calls.append((what, samples.shape[0], dataset))
        return float(samples.mean())

    def metrics(value: float) -> dict:
        return {
            "fid": value,
            "kid": 0.001,
            "kid_std": 0.0001,
            "precision": 0.5,
            "recall": 0.25,
            "coverage_entropy": 3.0,
            "class_histogram": [0.1] * 10,
        }

    fake = types.ModuleType("shared_utils.sample_quality")
    fake.fid = lambda samples, dataset: check(samples, dataset, "fid")
    fake.evaluate = lambda samples, dataset: metrics(check(samples, dataset, "evaluate"))
    fake.floor = lambda dataset: metrics(1.5)
    fake.table = lambda rows, floor: "| " + " | ".join(rows) + " | floor |"
    monkeypatch.setitem(sys.modules, "shared_utils.sample_quality", fake)
    return calls


def test_train_evaluate_and_sample_commands(tmp_path, capsys, fake_sample_quality):
    common = ["--gan", "sngan", "--dataset", "fashion-mnist", "--limit-train", "40"]
    common += ["--batch-size", "10", "--width", "4", "--z-dim", "4", "--epochs", "1", "--quiet"]
    common += ["--eval-every", "2", "--eval-fid-n", "30"]
    ship = tmp_path / "sngan.safetensors"
    assert main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 4 and ckpt.train_state is None and ckpt.model == {"z_dim": 4, "width": 4}
    assert ckpt.train["dataset"] == "fashion-mnist" and ckpt.train["lr"] == 2e-4
    assert "--lr 0.0002" in ckpt.command  # the paper's values are recorded in the command
    assert fake_sample_quality == [("fid", 30, "fashion-mnist")] * 2
    rows = read_csv_log(tmp_path / "a" / "eval.csv")
    assert [r["step"] for r in rows] == [2, 4]
    assert {"fid", "cpu_minutes", "train_cpu_minutes", "wall_minutes"} <= set(rows[0])
    assert rows[1]["cpu_minutes"] >= rows[1]["train_cpu_minutes"] > 0
    grids = sorted(p.name for p in (tmp_path / "a" / "samples").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]
    # shipped: the moving average of G (not the live G of last.safetensors), eval mode
    shipped, live = load_model(ship, Generator), load_model(
        tmp_path / "a" / "last.safetensors", Generator
    )
    assert not torch.equal(shipped.project.weight, live.project.weight)
    # a used folder is refused with one line
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0]

    argv = [str(ship), "--num-samples", "20"]
    assert evaluate_command.main(argv) == 0
    out = capsys.readouterr().out
    assert "| sngan | floor |" in out and "fashion-mnist" in out
    assert fake_sample_quality[-1] == ("evaluate", 20, "fashion-mnist")
    assert "fid_n20" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_command.main([*argv, "--write"]) == 0
    metrics = load_checkpoint(ship).metrics
    assert metrics["precision_n20"] == 0.5 and metrics["sample_quality_n20"]["seed"] == 0
    png = tmp_path / "grid.png"
    assert sample_command.main([str(ship), "--num-samples", "4", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    missing = str(tmp_path / "missing.safetensors")
    assert evaluate_command.main([missing]) == 1 and sample_command.main([missing]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err)
