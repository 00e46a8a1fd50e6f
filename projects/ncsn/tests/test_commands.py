"""The project's own command options: the sample-quality evaluation (with its floor at the same
number of samples) and the sampler's flags.

Origin: written for dgm-course (MIT licence). ``shared_utils.sample_quality`` is replaced by a
stand-in (its feature network is not what is tested here).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from ncsn import evaluate as evaluate_command
from ncsn import sample as sample_command
from ncsn.model import TEST_CONFIG, Model, draw

from shared_utils.checkpoints import load_checkpoint, save_checkpoint

torch.set_num_threads(1)


@pytest.fixture
def fake_sample_quality(monkeypatch):
    calls: list[tuple[str, int]] = []

    def metrics(value: float, n: int) -> dict:
        return {
            "fid": value,
            "kid": 0.001,
            "kid_std": 0.0001,
            "precision": 0.5,
            "recall": 0.25,
            "coverage_entropy": 3.0,
            "class_histogram": [0.1] * 10,
            "n": n,
        }

    def evaluate(samples, dataset):
        assert samples.shape[1:] == (1, 28, 28) and 0 <= samples.min() <= samples.max() <= 1
        calls.append(("evaluate", samples.shape[0]))
        return metrics(float(samples.mean()), samples.shape[0])

    fake = types.ModuleType("shared_utils.sample_quality")
    fake.evaluate = evaluate

    def floor(dataset, n=None):
        calls.append(("floor", n))
        return metrics(0.0, n or 10_000)

    fake.floor = floor
    fake.table = lambda rows, floor: "| " + " | ".join(rows) + " | 10k training images |"
    monkeypatch.setitem(sys.modules, "shared_utils.sample_quality", fake)
    return calls


def _checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Model(**TEST_CONFIG)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(
        path, model, model_config=model.config(), train_config={"dataset": "mnist"}, step=1
    )
    return path, model


def test_sample_quality_scores_the_samples_of_draw_against_the_floor_at_n(
    tmp_path, capsys, fake_sample_quality
):
    path, model = _checkpoint(tmp_path)
    argv = [str(path), "--sample-quality", "--num-samples", "6", "--T", "1", "--eps", "1e-4"]
    assert evaluate_command.main([*argv, "--write"]) == 0
    assert fake_sample_quality == [("evaluate", 6), ("floor", 6)]
    out = capsys.readouterr().out
    assert "L=10 T=1 eps=0.0001" in out and "6 training images" in out
    saved = load_checkpoint(path).metrics["sample_quality_T1_eps0.0001_n6"]
    expected = float(draw(model, 6, seed=0, eps=1e-4, T=1).mean())
    assert saved["fid"] == pytest.approx(expected, rel=1e-6)  # the stand-in's "FID": the mean
    assert saved["settings"] == {"L": 10, "T": 1, "eps": 1e-4, "bf16": False, "seed": 0}
    assert saved["floor"]["n"] == 6 and "--sample-quality" in saved["command"]
    assert evaluate_command.main([str(path), "--sample-quality", "--T", "0"]) == 1
    assert "--T at least 1" in capsys.readouterr().err


def test_sample_command_takes_the_sampler_flags(tmp_path, capsys):
    path, model = _checkpoint(tmp_path)
    png = tmp_path / "grid.png"
    assert (
        sample_command.main([str(path), "--num-samples", "3", "--T", "1", "--out", str(png)]) == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sample_command.main([str(path), "--T", "0", "--out", str(png)]) == 1
    assert "--T must be at least 1" in capsys.readouterr().err


def test_sampling_is_seeded_and_in_range():
    torch.manual_seed(0)
    model = Model(**TEST_CONFIG).eval()
    a = draw(model, 5, seed=3, chunk=2, T=1)
    b = draw(model, 5, seed=3, chunk=2, T=1)
    assert a.shape == (5, 1, 28, 28) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, draw(model, 5, seed=4, chunk=2, T=1))
