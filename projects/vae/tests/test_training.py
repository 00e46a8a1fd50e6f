"""Training loop, schedule, checkpoints and the train CLI's resume."""

from __future__ import annotations

import torch
from vae.evaluate import evaluate, load_model
from vae.model import VAE, build_model
from vae.objectives import training_loss
from vae.train import burda_stage, learning_rate, main

from shared_utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

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
    path = save_checkpoint(tmp_path / "m.safetensors", model, config=model.config(), step=1)
    fresh = build_model(load_checkpoint(path).config)
    load_checkpoint(path, fresh)
    z = torch.randn(4, 3)
    x = torch.rand(4, 784)
    assert torch.equal(model.decode(z), fresh.decode(z))
    assert all(torch.equal(a, b) for a, b in zip(model.encode(x), fresh.encode(x), strict=True))
    assert torch.equal(load_model(path).decode(z), model.decode(z))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        load_checkpoint(path, fresh)
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


def test_train_cli_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    common = ["--limit-train", "200", "--batch-size", "50", "--latent-dim", "4", "--quiet"]
    common += ["--n-monitor", "20", "--save-every", "1", "--log-every", "2"]
    assert main([*common, "--epochs", "3", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--epochs", "3", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "a" / "model.safetensors")
    b = load_checkpoint(tmp_path / "b" / "model.safetensors")
    assert a.step == b.step == 12
    assert all(torch.equal(a.state_dict[key], b.state_dict[key]) for key in a.state_dict)
    assert "--resume" in b.command and b.config["latent_dim"] == 4
    # a resume with nothing to resume, or with other options, is a one-line error
    assert main([*common, "--out", str(tmp_path / "c"), "--resume"]) == 1
    assert main([*common, "--k", "2", "--out", str(tmp_path / "b"), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "same options" in err
