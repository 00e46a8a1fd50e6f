"""The training loop on the run kit: exact resume, the train command and its one-line errors."""

from __future__ import annotations

import torch
from pixelcnn.train import TrainConfig, main, train

from shared_utils.checkpoints import load_checkpoint
from shared_utils.testing import assert_resume_is_exact, assert_same_run
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared


def _cfg(out, **kw) -> TrainConfig:
    """64 images in batches of 16: 4 steps per epoch, 3 epochs; saves every 3 steps. A tiny
    class-conditional Gated PixelCNN unless ``kw`` says otherwise."""
    settings = dict(n_classes=10, channels=4, n_layers=2, limit_train=64, batch_size=16)
    settings.update(eval_n=16, epochs=3, save_every=3, log_every=2, quiet=True)
    return TrainConfig(out=out, **{**settings, **kw})


def test_resume_is_exact_after_max_steps_minutes_and_a_kill(tmp_path, monkeypatch):
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)
    assert len(read_csv_log(tmp_path / "straight" / "eval.csv")) == 3  # one row per epoch


def test_train_command_and_its_errors(tmp_path, capsys):
    common = ["--channels", "4", "--n-layers", "2", "--limit-train", "32", "--batch-size", "16"]
    common += ["--eval-n", "8", "--epochs", "1", "--quiet"]
    ship = tmp_path / "plain.safetensors"
    argv = [*common, "--kind", "pixelcnn", "--binarization", "fixed", "--backend", "channels_last"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.train["batch_size"] == 16 and ckpt.train_state is None
    assert ckpt.model == {
        "kind": "pixelcnn",
        "channels": 4,
        "n_layers": 2,
        "first_kernel": 7,
        "kernel_size": 3,
        "n_classes": 0,
    }
    assert ckpt.command.startswith("python -m pixelcnn.train") and "--kind pixelcnn" in ckpt.command
    assert "last_eval" in ckpt.metrics and ckpt.metrics["stopped_by"] == "epochs"
    # bad input: one line on stderr and exit status 1, nothing trained
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1  # a used folder
    assert main([*argv, "--out", str(tmp_path / "c"), "--resume"]) == 1  # nothing to resume
    resume = [*argv, "--out", str(tmp_path / "a"), "--resume"]
    assert main([*resume[:1], "8", *resume[2:]]) == 1  # --channels 8 instead of 4
    conditional_plain = ["--n-classes", "10", "--kind", "pixelcnn", "--out", str(tmp_path / "d")]
    assert main([*common, *conditional_plain]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and "--resume" in err[0] and "nothing to resume" in err[1]
    assert "channels: saved 4, given 8" in err[2] and "class-conditional" in err[3]
    assert not (tmp_path / "d").exists()


def test_channels_last_resume_is_exact(tmp_path):
    """The channels_last backend keeps parameters and Adam moments in one layout across a resume."""
    kw = dict(kind="pixelcnn", n_classes=0, epochs=2, backend="channels_last")
    train(_cfg(tmp_path / "straight", **kw))
    train(_cfg(tmp_path / "split", max_steps=3, **kw))
    train(_cfg(tmp_path / "split", resume=True, **kw))
    assert_same_run(tmp_path / "straight", tmp_path / "split")
