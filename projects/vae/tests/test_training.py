"""Training loop, schedule, checkpoints and the train CLI's resume."""

from __future__ import annotations

import torch
from vae import evaluate as evaluate_cli
from vae.evaluate import evaluate
from vae.model import VAE
from vae.objectives import training_loss
from vae.train import TrainConfig, burda_stage, learning_rate, main, train

from shared_utils.checkpoints import CheckpointError, load_checkpoint, load_model, save_checkpoint
from shared_utils.testing import assert_resume_is_exact

torch.set_num_threads(1)  # the course machine's cores are shared


def test_loss_decreases_on_a_tiny_batch():
    for objective, k in (("vae", 1), ("iwae", 5)):
        torch.manual_seed(0)
        model = VAE(latent_dim=4, hidden_dim=32)
        x = torch.bernoulli(torch.rand(16, 784, generator=torch.Generator().manual_seed(0)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(40):
            loss = training_loss(model, x, objective, k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, objective


def test_output_bias_starts_at_the_pixel_mean_logit():
    model = VAE(latent_dim=2, hidden_dim=8)
    mean = torch.linspace(0.0, 1.0, 784)
    model.init_output_bias(mean)
    probs = torch.sigmoid(model.decoder[-1].bias)
    assert torch.allclose(probs[1:-1], mean[1:-1], atol=1e-5)


def test_burda_schedule():
    # stage i lasts 3^i epochs: 1 + 3 + ... + 3^7 = 3280 epochs in all (Burda et al. Sec. 5)
    assert [burda_stage(e) for e in (0, 1, 3, 4, 12, 13, 3279)] == [0, 1, 1, 2, 2, 3, 7]
    assert learning_rate(0, 1e-3, "burda") == 1e-3
    assert abs(learning_rate(3279, 1e-3, "burda") - 1e-4) < 1e-12
    assert learning_rate(500, 1e-3, "constant") == 1e-3


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden_dim=16)
    path = save_checkpoint(tmp_path / "m.safetensors", model, model_config=model.config(), step=1)
    fresh = load_model(path, VAE)
    z = torch.randn(4, 3)
    x = torch.rand(4, 784)
    assert torch.equal(model.decode(z), fresh.decode(z))
    assert all(torch.equal(a, b) for a, b in zip(model.encode(x), fresh.encode(x), strict=True))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        load_model(path, VAE)
    except CheckpointError as err:
        assert "corrupted" in str(err)
    else:  # pragma: no cover - the test must be able to fail
        raise AssertionError("a corrupted checkpoint was loaded")


def test_evaluate_returns_nll_above_minus_elbo():
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden_dim=16)
    x = torch.bernoulli(torch.full((10, 784), 0.2))
    result = evaluate(model, x, k=50, elbo_k=50, batch_size=4, chunk=20)
    assert result["nll"] <= -result["elbo"] + 0.5


def _cfg(out, **kw) -> TrainConfig:
    """200 images in batches of 50: 4 steps per epoch, 3 epochs; saves every 3 steps."""
    return TrainConfig(
        out=out,
        limit_train=200,
        batch_size=50,
        latent_dim=4,
        eval_n=20,
        epochs=3,
        save_every=3,
        log_every=2,
        quiet=True,
        **kw,
    )


def test_resume_is_exact_after_max_steps_minutes_and_a_kill(tmp_path, monkeypatch):
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)


def test_train_and_evaluate_commands(tmp_path, capsys):
    common = ["--limit-train", "100", "--batch-size", "50", "--latent-dim", "4", "--quiet"]
    common += ["--eval-n", "20", "--epochs", "1"]
    ship = tmp_path / "vae.safetensors"
    assert main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.model["latent_dim"] == 4 and ckpt.train["batch_size"] == 50
    assert ckpt.command.startswith("python -m vae.train") and "--latent-dim 4" in ckpt.command
    # a used folder, a resume with nothing to resume, or with other options: one-line errors
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    assert main([*common, "--out", str(tmp_path / "c"), "--resume"]) == 1
    assert main([*common, "--k", "2", "--out", str(tmp_path / "a"), "--resume"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--resume" in err[0] and "nothing to resume" in err[1]
    assert "k: saved 1, given 2" in err[2]
    argv = [str(ship), "--k", "10", "--eval-n", "20", "--elbo-k", "2"]
    assert evaluate_cli.main(argv) == 0
    assert "test_nll_iwae_k10_first20" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_cli.main([*argv, "--write"]) == 0
    assert "test_nll_iwae_k10_first20" in load_checkpoint(ship).metrics
    assert evaluate_cli.main([str(tmp_path / "nope.safetensors")]) == 1
    assert "does not exist" in capsys.readouterr().err
