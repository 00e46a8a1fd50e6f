"""shared_utils.checkpoints: round trips, resumable state, atomicity, corruption is reported."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from shared_utils.checkpoints import (
    CheckpointError,
    load_checkpoint,
    read_sidecar,
    save_checkpoint,
    sidecar_path,
    train_state_path,
    update_metrics,
)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.BatchNorm1d(3))


def test_weights_round_trip(tmp_path):
    model = _model(0)
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        config={"hidden": 8},
        step=7,
        metrics={"nll": 1.5},
        command="x",
    )
    fresh = _model(1)
    ckpt = load_checkpoint(path, fresh)
    x = torch.randn(5, 4)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    assert ckpt.config == {"hidden": 8} and ckpt.step == 7 and ckpt.metrics == {"nll": 1.5}
    assert ckpt.command == "x"
    assert not train_state_path(path).exists()


def test_resumable_state_round_trip_continues_identically(tmp_path):
    def step(model, opt, x):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()

    x = torch.randn(16, 4)
    model = _model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        step(model, opt, x)
    path = tmp_path / "run" / "last.safetensors"
    save_checkpoint(
        path,
        model,
        config={},
        step=3,
        train_state={"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "epoch": 1},
    )
    step(model, opt, x)  # the uninterrupted run goes one step further

    resumed = _model(5)
    ckpt = load_checkpoint(path, resumed, load_train_state=True)
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt.train_state["optimizer"])
    assert ckpt.train_state["epoch"] == 1
    assert ckpt.train_state["rng"].dtype == torch.uint8
    step(resumed, opt2, x)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_sidecar_contents_and_metrics_update(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.safetensors", _model(), config={"a": 1}, step=1, command="cmd"
    )
    side = read_sidecar(path)
    assert len(side["sha256"]) == 64 and side["weights"] == "m.safetensors"
    update_metrics(path, test_nll=88.1)
    assert load_checkpoint(path).metrics == {"test_nll": 88.1}


def test_corrupted_weights_are_refused(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.safetensors", _model(), config={}, step=1, command="retrain"
    )
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x55
    path.write_bytes(bytes(blob))
    model = _model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="corrupted.*retrain"):
        load_checkpoint(path, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_or_broken_sidecar_is_reported(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), config={}, step=1)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_wrong_architecture_is_reported_and_model_untouched(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), config={"hidden": 8}, step=1)
    other = nn.Sequential(nn.Linear(4, 9), nn.Tanh(), nn.Linear(9, 3), nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(0), config={"v": 1}, step=1)
    good = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, _model(1), config={"v": 2}, step=2, train_state={"bad": object()})
    assert path.read_bytes() == good
    assert json.loads(sidecar_path(path).read_text())["config"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, path)  # a pickle under a safetensors name
    sidecar_path(path).write_text(
        json.dumps(
            {
                "config": {},
                "step": 0,
                "sha256": __import__("hashlib").sha256(path.read_bytes()).hexdigest(),
            }
        )
    )
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_path_must_be_safetensors(tmp_path):
    with pytest.raises(ValueError, match=".safetensors"):
        save_checkpoint(tmp_path / "m.pt", _model(), config={}, step=0)


def test_files_get_ordinary_permissions(tmp_path):
    import os

    path = save_checkpoint(tmp_path / "m.safetensors", _model(), config={}, step=1)
    update_metrics(path, nll=1.0)
    mask = os.umask(0)
    os.umask(mask)
    for p in (path, sidecar_path(path)):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask
