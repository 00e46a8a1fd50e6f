"""The network and the objective (unet.py, model.py): shapes, conditioning, L_simple, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from ddpm.model import DDPM, draw, draw_training_noise, to_model_range
from ddpm.unet import sinusoidal_embedding

from shared_utils.checkpoints import load_model, save_checkpoint
from shared_utils.training import evaluating

torch.set_num_threads(1)  # the course machine's cores are shared
SMALL = dict(T=50, base_channels=8, channel_mults=[1, 1, 2], groups=4)


def _images(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blurry blobs (some structure to learn) as uint8 images, and labels."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1, 1, 28)
    centres = torch.rand(n, 2, generator=gen) - 0.5
    d2 = (grid[None, :, None] - centres[:, 0, None, None]) ** 2
    d2 = d2 + (grid[None, None, :] - centres[:, 1, None, None]) ** 2
    images = (255 * torch.exp(-d2 / 0.1)).round().to(torch.uint8).unsqueeze(1)
    return images, torch.randint(0, 10, (n,), generator=gen)


def test_the_default_network_fits_a_small_checkpoint_and_its_config_round_trips():
    model = DDPM()
    config = model.config()
    assert json.loads(json.dumps(config)) == config and DDPM(**config).config() == config
    weights = sum(p.numel() for p in model.parameters())
    assert weights * 4 < 10 * 2**20  # float32 weights under 10 MB
    assert list(model.state_dict()) == [f"net.{k}" for k in model.net.state_dict()]  # no schedule
    x = torch.randn(2, 1, 28, 28)
    out = model.net(x, torch.tensor([1, 1000]), torch.tensor([3, 10]))
    assert out.shape == x.shape


def test_the_network_depends_on_time_and_class():
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(1, 1, 28, 28).expand(3, -1, -1, -1)
        by_time = model.net(x, torch.tensor([1, 25, 50]), torch.tensor([2, 2, 2]))
        by_class = model.net(x, torch.tensor([7, 7, 7]), torch.tensor([0, 5, 10]))
    assert not torch.allclose(by_time[0], by_time[1]) and not torch.allclose(by_time[1], by_time[2])
    assert not torch.allclose(by_class[0], by_class[1]) and not torch.allclose(
        by_class[1], by_class[2]
    )
    emb = sinusoidal_embedding(torch.tensor([0, 1, 500]), 32)
    assert emb.shape == (3, 32) and torch.allclose(
        emb[0], torch.cat([torch.zeros(16), torch.ones(16)])
    )


def test_training_noise_and_label_dropout():
    x0 = torch.zeros(20_000, 1, 2, 2)
    y = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    t, eps, dropped = draw_training_noise(x0, y, 1000, torch.Generator().manual_seed(1), 0.1, 10)
    assert t.min() == 1 and t.max() == 1000 and eps.shape == x0.shape
    null = dropped == 10
    assert abs(null.double().mean().item() - 0.1) < 0.01  # 10 standard errors: ~0.002
    assert torch.equal(dropped[~null], y[~null])
    again = draw_training_noise(x0, y, 1000, torch.Generator().manual_seed(1), 0.1, 10)
    assert all(torch.equal(a, b) for a, b in zip((t, eps, dropped), again, strict=True))
    _, _, kept = draw_training_noise(x0, y, 1000, torch.Generator().manual_seed(1), 0.0, 10)
    assert torch.equal(kept, y)


def test_l_simple_is_the_noise_prediction_error():
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    images, labels = _images(4)
    x0 = to_model_range(images)
    assert x0.min() >= -1 and x0.max() <= 1 and torch.allclose(to_model_range(images / 255.0), x0)
    t = torch.tensor([1, 10, 30, 50])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    loss = model(x0, labels, t, eps)
    # the freshly built network predicts eps = 0 (its last convolution starts at zero)
    assert torch.allclose(loss, eps.pow(2).mean(), atol=1e-6)
    by_hand = (eps - model.net(model.schedule.q_sample(x0, t, eps), t, labels)).pow(2).mean()
    assert torch.allclose(loss, by_hand)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    images, labels = _images(16)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = model.loss(images, labels, gen, p_uncond=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:8]) / 8, losses


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DDPM(**SMALL)
    with torch.no_grad():
        for p in model.parameters():  # weights unlike a fresh model's
            p.add_(0.1 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "m.safetensors", model, model_config=model.config(), step=3)
    loaded = load_model(path, DDPM)
    assert not loaded.training and loaded.config() == model.config()
    weights, loaded_weights = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(weights[k], loaded_weights[k]) for k in weights)
    images, labels = _images(4)
    with evaluating(model), evaluating(loaded):
        assert torch.equal(
            model.evaluate(images, labels)["l_simple"], loaded.evaluate(images, labels)["l_simple"]
        )
        a = draw(model, 3, seed=1, steps=4, classes=[1, 2], w=1.0)
        b = draw(loaded, 3, seed=1, steps=4, classes=[1, 2], w=1.0)
    assert torch.equal(a, b)


def test_a_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="multiple of groups"):
        DDPM(base_channels=30, groups=8)
