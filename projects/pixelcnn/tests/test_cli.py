"""Checkpoints, the shipped sidecars' commands, and the evaluate / sample command lines."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from pixelcnn import evaluate, sample
from pixelcnn.model import build_model
from pixelcnn.train import MODEL_KEYS, TrainConfig

from shared_utils.checkpoints import load_checkpoint, load_model, save_checkpoint
from shared_utils.runs import command_line, parse_config

torch.set_num_threads(1)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def tiny_checkpoint(path: Path, **config) -> Path:
    torch.manual_seed(0)
    net = build_model(channels=4, n_layers=2, **config)
    return save_checkpoint(path, net, model_config=net.config(), step=3)


def test_checkpoint_round_trip(tmp_path):
    path = tiny_checkpoint(tmp_path / "m.safetensors", kind="gated", n_classes=10)
    net = build_model(**load_checkpoint(path).model)
    load_checkpoint(path, net)
    fresh = load_model(path, build_model)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.5))
    y = torch.tensor([1, 2])
    assert not fresh.training
    torch.testing.assert_close(net(x, y), fresh(x, y), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gated_cond", "pixelcnn"])
def test_shipped_sidecars_commands_are_todays_flags(name):
    """The command in each shipped sidecar parses and describes the sidecar's model and settings
    (and train.py writes a command for them that parses back to them); the weights load."""
    sidecar = json.loads((CHECKPOINTS / f"{name}.json").read_text())
    words = shlex.split(sidecar["command"])
    assert words[:3] == ["python", "-m", "pixelcnn.train"]
    cfg = parse_config(TrainConfig, words[3:])
    assert parse_config(TrainConfig, shlex.split(command_line(cfg))[3:]) == cfg
    assert {k: getattr(cfg, k) for k in MODEL_KEYS} == sidecar["model"]
    train_settings = {k: v for k, v in vars(cfg).items() if k not in MODEL_KEYS}
    assert json.loads(json.dumps(train_settings, default=str)) == sidecar["train"]
    model = load_model(CHECKPOINTS / f"{name}.safetensors", build_model)
    assert model.config() == sidecar["model"]


def test_evaluate_command(tmp_path, capsys):
    cond = str(tiny_checkpoint(tmp_path / "cond.safetensors", kind="gated", n_classes=10))
    plain = str(tiny_checkpoint(tmp_path / "plain.safetensors", kind="pixelcnn"))
    assert evaluate.main([cond, "--eval-n", "20"]) == 0
    assert evaluate.main([cond, "--eval-n", "4", "--marginal"]) == 0
    out = capsys.readouterr().out
    assert "test NLL (20 fixed-binarized test images, -log p(x | label), exact)" in out
    assert "label summed out" in out and "wrote" not in out  # no --write: the sidecar is kept
    assert "test_nll_nats_first20" not in load_checkpoint(cond).metrics
    assert evaluate.main([plain, "--eval-n", "8", "--write"]) == 0
    assert evaluate.main([cond, "--eval-n", "4", "--marginal", "--write"]) == 0
    assert "test_nll_nats_first8" in load_checkpoint(plain).metrics
    assert "test_nll_marginal_nats_first4" in load_checkpoint(cond).metrics
    capsys.readouterr()
    # bad input: one line on stderr and exit status 1
    assert evaluate.main([plain, "--eval-n", "4", "--marginal"]) == 1
    assert evaluate.main([str(tmp_path / "nope.safetensors")]) == 1
    assert evaluate.main([plain, "--eval-n", "0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "class-conditional" in err[0] and "does not exist" in err[1]


def test_sample_command(tmp_path, capsys):
    cond = str(tiny_checkpoint(tmp_path / "cond.safetensors", kind="gated", n_classes=10))
    plain = str(tiny_checkpoint(tmp_path / "plain.safetensors", kind="pixelcnn"))
    png = tmp_path / "s.png"
    assert sample.main([cond, "--num-samples", "2", "--label", "7", "--out", str(png)]) == 0
    assert png.exists() and "samples/s (fast sampler" in capsys.readouterr().out
    argv = [plain, "--num-samples", "2", "--sampler", "reference", "--out", str(png)]
    assert sample.main(argv) == 0
    assert "reference sampler" in capsys.readouterr().out
    assert sample.main([plain, "--label", "3", "--out", str(png)]) == 1
    assert sample.main([cond, "--label", "12", "--out", str(png)]) == 1
    assert sample.main([str(tmp_path / "nope.safetensors")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--label" in err[0] and "0..9" in err[1]
