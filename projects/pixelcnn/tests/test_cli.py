"""Checkpoint round trip and the train / evaluate / sample command lines on a tiny subset."""

from __future__ import annotations

import pytest
import torch
from pixelcnn import evaluate, sample, train
from pixelcnn.model import build_model

from shared_utils.checkpoints import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
TINY = ["--model", "gated", "--conditional", "--channels", "8", "--layers", "2"]
TINY += ["--limit-train", "48", "--batch-size", "16", "--eval-n", "16", "--backend", "eager"]
TINY += ["--log-every", "1", "--save-every", "2"]


def test_checkpoint_round_trip(tmp_path):
    config = {"model": "gated", "conditional": True, "channels": 8, "layers": 2}
    torch.manual_seed(0)
    net = build_model(config)
    path = save_checkpoint(tmp_path / "m.safetensors", net, config=config, step=3)
    ckpt = load_checkpoint(path)
    net2 = build_model(ckpt.config)
    load_checkpoint(path, net2)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.5))
    y = torch.tensor([1, 2])
    torch.testing.assert_close(net(x, y), net2(x, y), rtol=0, atol=0)
    assert ckpt.step == 3


def test_train_resume_is_exact_and_cli_errors(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main([*TINY, "--epochs", "2", "--out", str(straight)]) == 0
    assert train.main([*TINY, "--epochs", "1", "--out", str(split)]) == 0
    with pytest.raises(SystemExit, match="--resume"):  # refuses to overwrite a run
        train.main([*TINY, "--epochs", "1", "--out", str(split)])
    with pytest.raises(SystemExit, match="channels"):  # resuming with another architecture
        train.main([*TINY[:4], "16", *TINY[5:], "--resume", "--epochs", "2", "--out", str(split)])
    assert train.main([*TINY, "--resume", "--epochs", "2", "--out", str(split)]) == 0
    a = load_checkpoint(straight / "last.safetensors")
    b = load_checkpoint(split / "last.safetensors")
    assert a.step == b.step == 6
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], rtol=0, atol=0)
    with pytest.raises(SystemExit, match="cannot resume"):
        train.main([*TINY, "--resume", "--out", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="gated"):
        train.main(["--model", "pixelcnn", "--conditional", "--out", str(tmp_path / "x")])

    ckpt = str(straight / "last.safetensors")
    assert evaluate.main([ckpt, "--n", "20"]) == 0
    assert evaluate.main([ckpt, "--n", "4", "--marginal"]) == 0
    out = capsys.readouterr().out
    assert "test NLL (20 fixed-binarized test images, -log p(x | label), exact)" in out
    assert "label summed out" in out and "test_nll_marginal_nats_first4" in out
    png = tmp_path / "s.png"
    assert sample.main([ckpt, "--n", "2", "--label", "7", "--out", str(png)]) == 0
    assert png.exists() and "samples/s" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        evaluate.main([str(tmp_path / "nope.safetensors")])
