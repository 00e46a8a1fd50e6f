"""shared_utils.data: offline MNIST, binarizations, clear errors on a missing or corrupted cache."""

from __future__ import annotations

import shutil

import pytest
import torch

from shared_utils import data


def test_mnist_splits_have_the_official_sizes_and_labels():
    x, y = data.mnist_tensors("train")
    assert x.shape == (60_000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60_000,)
    xt, yt = data.mnist_tensors("test")
    assert xt.shape == (10_000, 28, 28)
    # the well-known first test labels of MNIST
    assert yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    a, _ = data.mnist_tensors("train-50k")
    b, _ = data.mnist_tensors("valid-10k")
    assert a.shape[0] == 50_000 and b.shape[0] == 10_000
    assert torch.equal(torch.cat([a, b]), x)


def test_torchvision_dataset_reads_the_prepared_files():
    ds = data.mnist("test")
    img, label = ds[0]
    assert label == 7 and img.size == (28, 28)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        data.mnist_tensors("validation")


def test_fixed_binarization_is_deterministic_and_binary():
    a = data.fixed_binarized_mnist("test")
    b = data.fixed_binarized_mnist("test")
    assert a.shape == (10_000, 1, 28, 28)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    # the binarization follows the intensities: mean close to mean(pixel/255)
    x, _ = data.mnist_tensors("test")
    assert abs(a.mean().item() - (x.float() / 255).mean().item()) < 2e-3


def test_dynamic_binarization_resamples():
    ds = data.BinarizedMNIST("test", binarization="dynamic")
    torch.manual_seed(0)
    first = torch.stack([ds[i][0] for i in range(20)])
    second = torch.stack([ds[i][0] for i in range(20)])
    assert first.shape == (20, 1, 28, 28)
    assert not torch.equal(first, second)
    fixed = data.BinarizedMNIST("test", binarization="fixed")
    assert torch.equal(fixed[3][0], fixed[3][0])


def test_minibatches_cover_the_data_once():
    x = torch.arange(103).float()
    batches = list(data.minibatches(x, 10, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == x.tolist()
    assert len(list(data.minibatches(x, 10, drop_last=True))) == 10


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(data.DataError, match="make data"):
        data.mnist_tensors("test", root=tmp_path)


def test_corrupted_cache_is_reported_and_not_used(tmp_path):
    raw = data.mnist_raw_dir(tmp_path)
    shutil.copytree(data.mnist_raw_dir(), raw)
    target = raw / "t10k-labels-idx1-ubyte"
    payload = bytearray(target.read_bytes())
    payload[100] ^= 0xFF
    target.write_bytes(bytes(payload))
    with pytest.raises(data.DataError, match="corrupted"):
        data.mnist("test", root=tmp_path)
    # prepare() repairs it from the cached wheel-derived files, without touching anything else
    before = {p.name: p.read_bytes() for p in raw.iterdir() if p.name != target.name}
    shutil.copytree(data.data_dir() / "cache", tmp_path / "cache")
    data.prepare_mnist(tmp_path, verbose=False)
    data.check_mnist(tmp_path)
    assert {p.name: p.read_bytes() for p in raw.iterdir() if p.name != target.name} == before


def test_idx_round_trip_matches_torchvision_reader(tmp_path):
    from torchvision.datasets.mnist import read_image_file

    arr = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8).numpy()
    path = tmp_path / "imgs-idx3-ubyte"
    path.write_bytes(data._idx_bytes(arr))
    assert torch.equal(read_image_file(str(path)), torch.from_numpy(arr))


def test_pickle_loader_refuses_anything_but_arrays():
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps(Evil())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._ArrayOnlyUnpickler(io.BytesIO(blob)).load()


def test_fashion_mnist_has_the_official_sizes_labels_and_torchvision_reads_it():
    x, y = data.fashion_mnist_tensors("train")
    assert x.shape == (60_000, 28, 28) and x.dtype == torch.uint8
    xt, yt = data.fashion_mnist_tensors("test")
    assert xt.shape == (10_000, 28, 28)
    # Zalando's first test labels: ankle boot, pullover, trouser, trouser, shirt, ...
    assert yt[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert torch.bincount(y).tolist() == [6000] * 10
    img, label = data.fashion_mnist("test")[0]
    assert label == 9 and img.size == (28, 28)
    assert data.FASHION_CLASSES[label] == "Ankle boot"


def test_datasets_by_name_give_the_documented_layout():
    for name in data.DATASETS:
        images, labels = data.dataset_tensors(name, "test")
        assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
        x, _ = data.evaluation_inputs(name, "test")
        assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    fashion, _ = data.dataset_tensors("fashion-mnist", "test")
    digits, _ = data.dataset_tensors("mnist", "test")
    assert not torch.equal(fashion, digits)
    with pytest.raises(data.DataError, match="choose one of"):
        data.dataset_tensors("cifar10")


def test_missing_or_corrupted_fashion_mnist_names_the_fix(tmp_path):
    with pytest.raises(data.DataError, match="Fashion-MNIST is not prepared.*make data"):
        data.fashion_mnist_tensors("test", root=tmp_path)
    raw = data.fashion_raw_dir(tmp_path)
    shutil.copytree(data.fashion_raw_dir(), raw)
    target = raw / "train-labels-idx1-ubyte"
    payload = bytearray(target.read_bytes())
    payload[-1] ^= 0xFF
    target.write_bytes(bytes(payload))
    with pytest.raises(data.DataError, match="Fashion-MNIST cache is corrupted"):
        data.fashion_mnist("train", root=tmp_path)
    # prepare() repairs it from the unpacked Debian package in the cache, offline
    shutil.copytree(
        data.data_dir() / "cache" / "fashion-mnist-deb", tmp_path / "cache" / "fashion-mnist-deb"
    )
    data.prepare_fashion_mnist(tmp_path, verbose=False)
    data.check_fashion_mnist(tmp_path)


def test_a_failed_apt_download_says_what_to_do(tmp_path, monkeypatch):
    import subprocess

    def failing(cmd, cwd):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")

    monkeypatch.setattr(data, "_run", failing)
    monkeypatch.setattr(data.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(data, "FASHION_DEB_MEMBER_DIR", "no/such/dir")
    with pytest.raises(data.DataError, match=r"apt-get download.*\n.*Unable.*\n.*--online"):
        data.prepare_fashion_mnist(tmp_path, verbose=False)
    assert not data.fashion_raw_dir(tmp_path).exists()
