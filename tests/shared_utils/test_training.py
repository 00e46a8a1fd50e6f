"""shared_utils.training: smoke switch, seeding, CSV logs (resume), EMA, budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared_utils import training


def test_smoke_switch(monkeypatch):
    monkeypatch.delenv("DGM_SMOKE", raising=False)
    assert not training.is_smoke()
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("DGM_SMOKE", value)
        assert training.is_smoke()
    monkeypatch.setenv("DGM_SMOKE", "0")
    assert not training.is_smoke()


def test_seed_everything_reproduces():
    g = training.seed_everything(3)
    a = torch.rand(3), torch.rand(2, generator=g)
    g = training.seed_everything(3)
    b = torch.rand(3), torch.rand(2, generator=g)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_csv_logger_appends_and_never_rewrites(tmp_path):
    path = tmp_path / "log.csv"
    log = training.CSVLogger(path)
    for step in range(1, 4):
        log.log(step=step, loss=torch.tensor(1.0 / step))
    rows = training.read_csv_log(path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["loss"] == 0.5 and rows[2]["loss"] == float(torch.tensor(1 / 3))  # exact
    with pytest.raises(ValueError, match="columns"):
        log.log(step=4, other=1)
    before = path.read_bytes()
    reopened = training.CSVLogger(path)  # a resumed run reopens the log: columns kept ...
    assert reopened.size() == len(before)
    reopened.log(step=4, loss=0.25)
    assert path.read_bytes().startswith(before)  # ... and earlier rows keep their bytes
    assert path.read_text().splitlines()[1].startswith("1,")  # "1", not "1.0"


def test_adam_is_fused_where_possible():
    model = nn.Linear(3, 2)
    opt = training.adam(model.parameters(), lr=0.1, eps=1e-4)
    assert opt.defaults["fused"] is True and opt.defaults["eps"] == 1e-4


def test_ema_tracks_the_average():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = training.EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.5))
    ema.update(model)
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.75))
    assert not any(p.requires_grad for p in ema.shadow.parameters())
    with pytest.raises(ValueError):
        training.EMA(model, decay=1.0)


def test_evaluating_restores_mode():
    model = nn.Dropout(0.5)
    model.train()
    with training.evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
    assert model.training


def test_progress_can_be_disabled(monkeypatch):
    monkeypatch.setenv("DGM_PROGRESS", "0")
    bar = training.progress(range(3))
    assert bar.disable and list(bar) == [0, 1, 2]


def test_set_threads_sets_the_count_and_flushes_subnormals():
    before = torch.get_num_threads()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals to zero")
    try:
        tiny = torch.tensor([1e-39], dtype=torch.float32)
        assert (tiny * 1.0).item() > 0
        training.set_threads(1)
        assert torch.get_num_threads() == 1
        assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)
