"""The training loop applies Jang et al.'s temperature schedule step by step, for both estimators.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import pytest
import torch
from gumbel_vae.model import TEST_CONFIG, temperature
from gumbel_vae.train import TrainConfig, train

from shared_utils.checkpoints import load_checkpoint
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared


@pytest.mark.parametrize("estimator", ["gumbel", "st"])
def test_each_step_uses_the_scheduled_temperature(tmp_path, estimator):
    cfg = TrainConfig(
        out=tmp_path / "run",
        limit_train=200,
        batch_size=50,
        epochs=3,
        eval_n=10,
        eval_k=2,
        log_every=1,
        anneal_rate=0.2,
        anneal_every=3,
        tau_min=0.6,
        estimator=estimator,
        quiet=True,
        **TEST_CONFIG,
    )
    train(cfg)
    rows = read_csv_log(tmp_path / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    expected = [temperature(t, 1.0, 0.6, 0.2, 3) for t in range(12)]  # t: steps already taken
    assert [r["tau"] for r in rows] == pytest.approx(expected)
    assert expected[:3] == [1.0] * 3 and expected[-1] == 0.6  # held N steps, then the floor
    assert all(r["loss"] > 0 for r in rows)
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").train["estimator"] == estimator
