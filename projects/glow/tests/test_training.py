"""The training loop: the warm-up, a loss that decreases, exact resume (ActNorm not initialised
again), the stop on a non-finite loss before a save, and the train / evaluate / sample commands."""

from __future__ import annotations

import pytest
import torch
from glow import evaluate as evaluate_command
from glow import sample as sample_command
from glow.bench import bpd_per_cpu_minute
from glow.model import Glow, dequantize
from glow.train import TrainConfig, learning_rate, main, train

from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.data import dataset_tensors
from shared_utils.runs import RunError
from shared_utils.testing import assert_last_save_kept, assert_resume_is_exact, nan_on_call
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared
TINY = ["--levels", "2", "--steps", "1", "--hidden", "8", "--batch-size", "10", "--quiet"]


def test_linear_warmup():
    assert learning_rate(1, 1e-3, 100) == pytest.approx(1e-5)
    assert learning_rate(50, 1e-3, 100) == pytest.approx(5e-4)
    assert learning_rate(100, 1e-3, 100) == learning_rate(5000, 1e-3, 100) == 1e-3
    assert learning_rate(1, 1e-3, 0) == 1e-3


def test_loss_decreases_on_a_tiny_batch():
    images, _ = dataset_tensors("mnist", "train")
    torch.manual_seed(0)
    model = Glow(levels=2, steps=2, hidden=16)
    g = torch.Generator().manual_seed(0)
    model.initialize(dequantize(images[:32], g))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(dequantize(images[:32], g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5, losses


def _cfg(out, **kw) -> TrainConfig:
    """40 images in batches of 10: 4 steps per epoch, 3 epochs; saves every 3 steps."""
    settings = dict(
        limit_train=40,
        batch_size=10,
        levels=2,
        steps=1,
        hidden=8,
        warmup=5,
        grad_clip=50.0,
        eval_n=10,
        epochs=3,
        save_every=3,
        log_every=2,
        quiet=True,
    )
    return TrainConfig(out=out, **{**settings, **kw})


def test_resume_is_exact_after_max_steps_a_kill_and_minutes(tmp_path, monkeypatch):
    """Stopped mid-epoch by --max-steps (step 5), killed after step 8 (last save: step 6) and
    stopped by --minutes, each resumed: bitwise the straight run. A resumed run that initialised
    ActNorm again would differ."""
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)
    ckpt = load_checkpoint(tmp_path / "straight" / "last.safetensors", load_train_state=True)
    assert ckpt.step == 12 and "optimizer" in ckpt.train_state["objects"]
    assert all(v.item() == 1 for k, v in ckpt.state_dict.items() if k.endswith("initialized"))
    assert [r["step"] for r in read_csv_log(tmp_path / "straight" / "eval.csv")] == [4, 8, 12]
    assert {"train_bpd", "lr", "grad_norm"} <= set(
        read_csv_log(tmp_path / "straight" / "log.csv")[0]
    )


def test_a_nan_loss_stops_training_before_the_next_save(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Glow, "loss", nan_on_call(Glow.loss, call=5))
    out = tmp_path / "nan"
    with pytest.raises(RunError, match="diverged at step 5: loss nan"):
        train(_cfg(out, save_every=2))
    assert_last_save_kept(out, step=4)
    # the command line: one line on stderr, exit code 1
    monkeypatch.setattr(Glow, "loss", nan_on_call(Glow.loss, call=3))
    argv = [*TINY, "--limit-train", "40", "--eval-n", "0", "--out", str(tmp_path / "cli")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step 3" in err[0]


def test_train_evaluate_and_sample_commands(tmp_path, capsys):
    common = [*TINY, "--dataset", "fashion-mnist", "--limit-train", "20", "--eval-n", "10"]
    common += ["--epochs", "1", "--permutation", "plain", "--warmup", "2", "--log-every", "1"]
    ship = tmp_path / "glow.safetensors"
    assert main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.train_state is None
    assert ckpt.model == {
        "levels": 2,
        "steps": 1,
        "hidden": 8,
        "permutation": "plain",
        "coupling": "affine",
        "in_channels": 1,
        "image_size": 28,
    }
    assert ckpt.train["dataset"] == "fashion-mnist" and "--permutation plain" in ckpt.command
    rows = read_csv_log(tmp_path / "a" / "eval.csv")
    assert len(rows) == 1 and 0 < rows[0]["test_bpd"] < 16
    model = load_model(ship, Glow)
    assert model.initialized and not model.training
    # a used folder, or a resume with other options: one-line errors
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    assert main([*common, "--hidden", "4", "--out", str(tmp_path / "a"), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already holds a run" in err[0] and "hidden: saved 8" in err[1]
    # bits/dim per CPU-minute from the run folder
    curve = bpd_per_cpu_minute(tmp_path / "a")
    assert curve["points"][0]["step"] == 2 and curve["best_bpd"] == round(rows[0]["test_bpd"], 4)

    argv = [str(ship), "--eval-n", "10"]
    assert evaluate_command.main(argv) == 0
    out = capsys.readouterr().out
    assert "test bits/dim (10 fashion-mnist test images" in out
    assert "test_bpd_first10" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_command.main([*argv, "--write"]) == 0
    metrics = load_checkpoint(ship).metrics
    # the same images and seed as the run's own evaluation: the same number
    assert metrics["test_bpd_first10"] == pytest.approx(rows[0]["test_bpd"], abs=1e-4)
    assert metrics["evaluation_first10"]["seed"] == 0
    png = tmp_path / "grid.png"
    argv = [str(ship), "--num-samples", "4", "--temperature", "0.7", "--out", str(png)]
    assert sample_command.main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    missing = str(tmp_path / "missing.safetensors")
    assert evaluate_command.main([missing]) == 1 and sample_command.main([missing]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err)
