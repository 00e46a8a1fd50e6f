"""The training loop: the loss falls on a tiny batch, exact resume, a NaN stops training before a
save, and the train / evaluate / sample / bench commands."""

from __future__ import annotations

import pytest
import torch
from realnvp import bench
from realnvp import evaluate as evaluate_command
from realnvp import sample as sample_command
from realnvp import train as train_module
from realnvp.model import Flow
from realnvp.preprocess import dequantization_noise, dequantize
from realnvp.train import TrainConfig, main, train

from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.data import dataset_tensors
from shared_utils.runs import RunError
from shared_utils.testing import assert_last_save_kept, assert_resume_is_exact, nan_on_call
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared

TINY = {
    "realnvp": dict(kind="realnvp", scales=2, channels=8, blocks=1),
    "nice": dict(kind="nice", nice_hidden=32, nice_layers=2),
}


@pytest.mark.parametrize("kind", TINY)
def test_loss_decreases_on_a_tiny_batch(kind):
    torch.manual_seed(0)
    model = Flow(**TINY[kind])
    images, _ = dataset_tensors("mnist", "train")
    x = dequantize(images[:16], noise=dequantization_noise(16, (1, 28, 28), seed=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = train_module.training_loss(model.bits_per_dim, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses


def _cfg(out, **kw) -> TrainConfig:
    """200 images in batches of 50: 4 steps per epoch, 3 epochs; saves every 3 steps."""
    settings = dict(
        scales=2,
        channels=4,
        blocks=1,
        limit_train=200,
        batch_size=50,
        eval_n=20,
        epochs=3,
        save_every=3,
        log_every=2,
        quiet=True,
    )
    return TrainConfig(out=out, **{**settings, **kw})


def test_resume_is_exact_after_max_steps_a_kill_and_minutes(tmp_path, monkeypatch):
    """Stopped mid-epoch by --max-steps (at step 5), killed after step 8 (the last save: step 6)
    and stopped by --minutes, each resumed: bitwise the straight run (weights, Adam, RNGs, the
    dequantization noise drawn from the run's generator, the logs)."""
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)
    rows = read_csv_log(tmp_path / "straight" / "eval.csv")
    assert [r["step"] for r in rows] == [4, 8, 12] and all(2 < r["test_bpd"] < 16 for r in rows)
    assert {"loss_bpd", "grad_norm"} <= set(read_csv_log(tmp_path / "straight" / "log.csv")[0])


def test_a_nan_loss_stops_training_before_the_next_save(tmp_path, monkeypatch, capsys):
    original = train_module.training_loss
    monkeypatch.setattr(train_module, "training_loss", nan_on_call(original, call=5))
    out = tmp_path / "nan"
    with pytest.raises(RunError, match="diverged at step 5: loss = nan"):
        train(_cfg(out, save_every=2))
    assert_last_save_kept(out, step=4)
    # the command line: one line on stderr, exit code 1
    monkeypatch.setattr(train_module, "training_loss", nan_on_call(original, call=3))
    argv = ["--limit-train", "100", "--batch-size", "50", "--eval-n", "10", "--channels", "4"]
    assert (
        main([*argv, "--blocks", "1", "--scales", "2", "--quiet", "--out", str(tmp_path / "cli")])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step 3" in err[0]


def test_train_evaluate_sample_and_bench_commands(tmp_path, capsys, monkeypatch):
    common = ["--model", "nice", "--nice-hidden", "16", "--nice-layers", "1", "--quiet"]
    common += ["--limit-train", "100", "--batch-size", "50", "--eval-n", "20", "--epochs", "1"]
    ship = tmp_path / "nice.safetensors"
    assert (
        main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship), "--log-every", "1"]) == 0
    )
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.train_state is None and ckpt.model["kind"] == "nice"
    assert ckpt.train["dataset"] == "mnist" and "--model nice" in ckpt.command
    assert isinstance(load_model(ship, Flow), Flow)
    assert [r["step"] for r in read_csv_log(tmp_path / "a" / "eval.csv")] == [2]
    # a used folder, nothing to resume, other options on --resume: one line each, exit code 1
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    assert main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 1
    assert main([*common, "--alpha", "0.01", "--out", str(tmp_path / "a"), "--resume"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--resume" in err[0] and "nothing to resume" in err[1]
    assert "alpha: saved 0.05, given 0.01" in err[2]

    argv = [str(ship), "--eval-n", "20"]
    assert evaluate_command.main(argv) == 0
    assert "test bits/dim" in capsys.readouterr().out
    assert "test_bpd_first20" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_command.main([*argv, "--write"]) == 0
    metrics = load_checkpoint(ship).metrics
    assert 2 < metrics["test_bpd_first20"] < 16 and metrics["evaluation_first20"]["n_test"] == 20
    png = tmp_path / "grid.png"
    argv = [str(ship), "--num-samples", "4", "--temperature", "0.7", "--out", str(png)]
    assert sample_command.main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    missing = str(tmp_path / "missing.safetensors")
    assert evaluate_command.main([missing]) == 1 and sample_command.main([missing]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err)

    monkeypatch.setenv("DGM_SMOKE", "1")  # tiny sizes, writes nothing
    argv = ["--backends", "eager", "channels_last", "--steps", "1", "--runs", str(tmp_path / "a")]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "realnvp_eager" in out and "nice_eager" in out and "after" in out
    curve = bench.bpd_per_cpu_minute(tmp_path / "a")["curve"]
    assert len(curve) == 1 and curve[0]["step"] == 2 and curve[0]["cpu_minutes"] >= 0
