"""Tests of the plumbing, for any model that follows the contract of model.py.

Origin: written for dgm-course (MIT licence).

They use only that contract (``Model``, ``ModelConfig``, ``DATASET``, ``METRIC``, ``TEST_CONFIG``),
so they stay as they are when model.py is replaced: the model's interface, a falling loss on a tiny
batch, the checkpoint round trip, exact resume of training (stopped by --max-steps, by a kill and
by --minutes) and the commands with their errors. A few seconds on CPU with tiny runs.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict

import torch
from gumbel_vae import evaluate as evaluate_command
from gumbel_vae import sample as sample_command
from gumbel_vae.model import DATASET, EVAL_K, METRIC, TEST_CONFIG, Model, ModelConfig
from gumbel_vae.train import TrainConfig, main, train

from shared_utils.checkpoints import load_checkpoint, load_model, save_checkpoint
from shared_utils.data import model_inputs
from shared_utils.runs import command_line
from shared_utils.testing import assert_resume_is_exact
from shared_utils.training import evaluating

torch.set_num_threads(1)  # the course machine's cores are shared


def _small_model(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(**asdict(ModelConfig(**TEST_CONFIG)))


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random grey-level images as model inputs of ``DATASET``, and labels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return model_inputs(DATASET, images, gen), torch.randint(0, 10, (n,), generator=gen)


def test_model_follows_the_contract():
    assert Model().config() == asdict(ModelConfig())  # same arguments, same defaults
    model = _small_model()
    config = model.config()
    assert json.loads(json.dumps(config)) == config
    assert Model(**config).config() == config
    x, y = _batch(8)
    loss = model.loss(x, y)
    assert loss.shape == () and torch.isfinite(loss) and loss.requires_grad
    with evaluating(model):
        metrics = model.evaluate(x, y)
        samples = model.sample(5, generator=torch.Generator().manual_seed(0))
        again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert all(v.shape == (8,) and torch.isfinite(v).all() for v in metrics.values())
    assert METRIC in metrics
    assert samples.shape == (5, 1, 28, 28) and torch.equal(samples, again)
    assert samples.min() >= 0 and samples.max() <= 1


def test_loss_decreases_on_a_tiny_batch():
    model = _small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig().lr)
    x, y = _batch(16)
    losses = []
    for _ in range(30):
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < sum(losses[:5]), losses


def test_checkpoint_round_trip(tmp_path):
    model = _small_model()
    with torch.no_grad():
        for p in model.parameters():  # weights unlike a fresh model's
            p.add_(0.1 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "m.safetensors", model, model_config=model.config(), step=3)
    loaded = load_model(path, Model)
    assert not loaded.training and loaded.config() == model.config()
    weights, loaded_weights = model.state_dict(), loaded.state_dict()
    assert weights.keys() == loaded_weights.keys()
    assert all(torch.equal(weights[k], loaded_weights[k]) for k in weights)
    x, y = _batch(4)
    with evaluating(model), evaluating(loaded):
        torch.manual_seed(0)  # a stochastic estimator draws the same numbers for both
        expected = model.evaluate(x, y)
        torch.manual_seed(0)
        got = loaded.evaluate(x, y)
        samples = [m.sample(3, generator=torch.Generator().manual_seed(1)) for m in (model, loaded)]
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert torch.equal(*samples)


def _cfg(out, **kw) -> TrainConfig:
    """200 images in batches of 50: 4 steps per epoch, 3 epochs; saves every 3 steps."""
    settings = dict(limit_train=200, batch_size=50, eval_n=20, epochs=3, save_every=3)
    return TrainConfig(out=out, log_every=2, quiet=True, **TEST_CONFIG, **settings, **kw)


def test_resume_is_exact_after_max_steps_a_kill_and_minutes(tmp_path, monkeypatch):
    """Stopped mid-epoch by --max-steps (at step 5), killed after step 8 (the last save: step 6)
    and stopped by --minutes, each resumed: bitwise the straight run."""
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)


def test_train_evaluate_and_sample_commands(tmp_path, capsys):
    common = ["--limit-train", "100", "--batch-size", "50", "--eval-n", "20", "--epochs", "1"]
    common += ["--quiet", *shlex.split(command_line(TrainConfig(**TEST_CONFIG)))[3:]]
    ship = tmp_path / "model.safetensors"
    assert main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.train["batch_size"] == 50 and ckpt.train["dataset"] == DATASET
    assert ckpt.train_state is None and "--limit-train 100" in ckpt.command
    assert load_model(ship, Model).config() == ckpt.model
    # a used folder, nothing to resume, other options on --resume: one line each, exit code 1
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    assert main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 1
    assert main([*common, "--lr", "0.5", "--out", str(tmp_path / "a"), "--resume"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--resume" in err[0] and "nothing to resume" in err[1]
    assert "lr: saved" in err[2]

    argv = [str(ship), "--eval-n", "20"]
    assert evaluate_command.main(argv) == 0
    assert not any(k.endswith("_first20") for k in load_checkpoint(ship).metrics)  # no --write
    assert evaluate_command.main([*argv, "--write"]) == 0
    assert f"test_nll_iwae_k{EVAL_K}_first20" in load_checkpoint(ship).metrics
    png = tmp_path / "samples.png"
    assert sample_command.main([str(ship), "--num-samples", "4", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    missing = str(tmp_path / "missing.safetensors")
    assert evaluate_command.main([missing]) == 1
    assert sample_command.main([missing]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err)
