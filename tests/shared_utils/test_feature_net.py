"""shared_utils.feature_net: the classifiers whose features the sample-quality metrics use."""

from __future__ import annotations

import pytest
import torch

from shared_utils import feature_net as fn
from shared_utils.checkpoints import read_sidecar
from shared_utils.data import evaluation_inputs
from shared_utils.testing import assert_resume_is_exact

torch.set_num_threads(1)

REQUIRED_ACCURACY = {"mnist": 0.993, "fashion-mnist": 0.91}


@pytest.mark.parametrize("dataset", fn.FEATURE_DATASETS)
def test_shipped_network_reaches_the_required_test_accuracy(dataset):
    path = fn.weights_path(dataset)
    assert path.stat().st_size < 10 * 2**20
    net = fn.feature_network(dataset)
    x, y = evaluation_inputs(dataset, "test")
    measured = fn.accuracy(net, x, y)
    assert measured >= REQUIRED_ACCURACY[dataset]
    sidecar = read_sidecar(path)
    assert sidecar["metrics"]["test_accuracy"] == pytest.approx(measured, abs=1e-4)
    assert sidecar["command"].startswith("python -m shared_utils.feature_net")
    assert net.features(x[:5]).shape == (5, net.feature_dim) and not net.training


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        fn.feature_network("cifar10")


def test_augmentation_shifts_each_image_by_at_most_two_pixels():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 10, 12] = 1.0
    g = torch.Generator().manual_seed(0)
    moved = fn.augment(x, flips=False, generator=g)
    spots = [tuple(torch.nonzero(m[0]).tolist()[0]) for m in moved]
    assert all(abs(r - 10) <= 2 and abs(c - 12) <= 2 for r, c in spots)
    assert len(set(spots)) > 10  # per-image shifts, not one for the batch
    assert torch.equal(moved.sum((1, 2, 3)), x.sum((1, 2, 3)))
    flipped = fn.augment(x, flips=True, generator=torch.Generator().manual_seed(0))
    columns = {int(torch.nonzero(m[0])[0, 1]) for m in flipped}
    assert any(c >= 14 for c in columns) and any(c < 14 for c in columns)


def _cfg(out, **overrides):
    settings = dict(
        out=out,
        limit_train=96,
        batch_size=16,
        epochs=2,
        eval_n=32,
        width=4,
        feature_dim=8,
        save_every=2,
        log_every=2,
        quiet=True,
    )
    return fn.TrainConfig(**{**settings, **overrides})


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path, monkeypatch):
    assert_resume_is_exact(fn.train, _cfg, tmp_path, monkeypatch, stop_at=3, kill_at=9, minutes=0.1)
    from shared_utils.training import read_csv_log

    rows = read_csv_log(tmp_path / "straight" / "log.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_calibration_gives_features_of_unit_root_mean_square():
    torch.manual_seed(0)
    net = fn.FeatureNet(width=4, feature_dim=8).eval()
    x = torch.rand(64, 1, 28, 28)
    before = net.hidden(x).detach()
    net.calibrate(x, batch_size=16)
    with torch.no_grad():
        after = net.features(x)
        assert float(after.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-5)
        assert torch.allclose(after * net.feature_rms, net.hidden(x), atol=1e-6)
        assert torch.allclose(net.logits(after), net.head(net.hidden(x)), atol=1e-5)
    assert float(before.pow(2).mean().sqrt()) != pytest.approx(1.0, rel=1e-2)
