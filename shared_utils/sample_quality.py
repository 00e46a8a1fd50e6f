"""Sample quality for the course: FID, KID, precision/recall and class coverage, with the floor.

Origin: written for dgm-course (MIT licence). FID (Heusel et al., NeurIPS 2017) and KID (Binkowski
et al., ICLR 2018) are computed by torchmetrics (``FrechetInceptionDistance``,
``KernelInceptionDistance``) on the features of the dataset's own classifier
(:mod:`shared_utils.feature_net`), never Inception weights from the internet. Precision and recall
follow Kynkaanniemi et al., "Improved Precision and Recall Metric for Assessing Generative Models",
NeurIPS 2019, Sec. 2 with k = 3; class coverage is the histogram of the classifier's predicted
classes over the samples and its entropy (log2(10) = 3.32 bits when every class is equally frequent).

The course's protocol: 10,000 generated samples against the 10,000 test images, features from the
dataset's network. Every number is shown next to its **floor**, the same metric for the first
10,000 *training* images against the test images: real data that the model did not have to
generate, i.e. what "indistinguishable from the data" looks like under this protocol (FID and KID
are biased estimators; the floor is not 0).

    python -m shared_utils.sample_quality samples.npz --dataset mnist
    python -m shared_utils.sample_quality projects/gans/checkpoints/dcgan_mnist.safetensors \
        --model gans.networks:Generator
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

PROTOCOL_N = 10_000
PR_K = 3
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
FEATURE_BATCH = 1000
METRICS = ("fid", "kid", "kid_std", "precision", "recall", "coverage_entropy", "class_histogram")


class _Given(nn.Module):
    """The features are computed once here; torchmetrics receives them as its "images"."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def as_images(samples: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Samples as float32 ``[N, 1, 28, 28]`` in [0, 1]; uint8 input is divided by 255.

    Raises ``ValueError`` (one line saying what was expected) for any other shape or range.
    """
    x = torch.as_tensor(samples)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(
            f"samples must be [N, 1, 28, 28] or [N, 28, 28] images, got shape {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"float samples must lie in [0, 1] (got [{lo:.3g}, {hi:.3g}]); map a tanh output "
            "with (x + 1) / 2"
        )
    return x.clamp(0, 1)


@torch.inference_mode()
def image_features(samples, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features ``[N, D]``, class probabilities ``[N, 10]``) of images under ``dataset``'s net."""
    from shared_utils.feature_net import feature_network

    net = feature_network(dataset)
    x = as_images(samples)
    feats, probs = [], []
    for i in range(0, len(x), FEATURE_BATCH):
        f = net.features(x[i : i + FEATURE_BATCH])
        feats.append(f)
        probs.append(torch.softmax(net.logits(f), dim=1))
    return torch.cat(feats), torch.cat(probs)


@cache
def reference_features(dataset: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the protocol's real images: the 10,000 test images (``test``) or the first
    10,000 training images (``train``, the floor's stand-in for a perfect model)."""
    from shared_utils.data import evaluation_inputs

    images, _ = evaluation_inputs(dataset, split)
    return image_features(images[:PROTOCOL_N], dataset)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kid_from_features(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel) as mean and std over random subsets
    (torchmetrics); the subsets are drawn from a seeded RNG, so the result is repeatable."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": 10k x 128, by design
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=_Given(real.shape[1]), subsets=subsets, subset_size=size
        )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_radii(points: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of every point to its k-th nearest neighbour in the same set (itself excluded)."""
    radii = []
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i : i + chunk], points)
        # the smallest distance is the point's own 0; the (k+1)-th smallest is the k-th neighbour
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _inside_manifold(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk: int):
    """For each query: is it inside at least one ball B(point, radius) (Kynkaanniemi Eq. 1)?"""
    inside = []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], points)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = PR_K, chunk: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Eq. 1-2): the manifold of a set is
    the union of balls around its points reaching their k-th nearest neighbour; precision is the
    fraction of generated points inside the real manifold, recall the fraction of real points
    inside the generated one. Precision is sensitive to outliers among the real points (their
    balls are wide): on Fashion-MNIST, uniform noise, which the classifier maps to one spot, gets
    a high precision but zero recall, so read the two together. Distances in float32 (float64 costs 5x for the same answers up to
    ties at a ball's edge)."""
    real, fake = real.float(), fake.float()
    precision = _inside_manifold(fake, real, _kth_neighbour_radii(real, k, chunk), chunk)
    recall = _inside_manifold(real, fake, _kth_neighbour_radii(fake, k, chunk), chunk)
    return float(precision.double().mean()), float(recall.double().mean())


def class_coverage(probs: torch.Tensor) -> tuple[float, list[float]]:
    """(entropy in bits, frequencies) of the predicted classes (argmax) of a set of samples."""
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    freq = counts / counts.sum()
    nonzero = freq[freq > 0]
    entropy = float(-(nonzero * nonzero.log2()).sum()) + 0.0  # + 0.0: no "-0.0" for one class
    return entropy, [round(float(f), 4) for f in freq]


def metrics_from_features(
    real: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor], seed: int = 0
) -> dict[str, Any]:
    """Every metric of the protocol from (features, probabilities) of the real and fake sets."""
    kid, kid_std = kid_from_features(real[0], fake[0], seed=seed)
    precision, recall = precision_recall(real[0], fake[0])
    entropy, histogram = class_coverage(fake[1])
    return {
        "fid": fid_from_features(real[0], fake[0]),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "coverage_entropy": entropy,
        "class_histogram": histogram,
        "n": len(fake[0]),
    }


def evaluate(samples, dataset: str, seed: int = 0) -> dict[str, Any]:
    """The protocol's metrics of ``samples`` (the protocol uses 10,000) against the test set."""
    return metrics_from_features(
        reference_features(dataset), image_features(samples, dataset), seed
    )


@cache
def _floor(dataset: str) -> dict[str, Any]:
    return metrics_from_features(reference_features(dataset), reference_features(dataset, "train"))


def floor(dataset: str, n: int | None = None) -> dict[str, Any]:
    """The floor: the protocol's metrics of the first 10,000 training images against the test set.
    With ``n`` below 10,000, the floor *at n samples*: the first ``n`` training images, the
    comparison for ``n`` model samples (FID and KID grow as the sample count falls)."""
    if n is None or n >= PROTOCOL_N:
        return dict(_floor(dataset))
    if n < 2:
        raise ValueError(f"the floor needs at least 2 samples, got n = {n}")
    features, probs = reference_features(dataset, "train")
    return metrics_from_features(reference_features(dataset), (features[:n], probs[:n]))


def fid(samples, dataset: str) -> float:
    """FID alone (for training curves); with fewer than 10,000 samples it is biased upwards, so
    compare only numbers computed with the same number of samples."""
    return fid_from_features(reference_features(dataset)[0], image_features(samples, dataset)[0])


def table(rows: dict[str, dict[str, Any]], floor_row: dict[str, Any] | None = None) -> str:
    """A markdown table of the protocol's metrics, one row per entry, the floor last."""
    head = (
        "| | FID ↓ | KID ×10³ ↓ | precision ↑ | recall ↑ | class entropy (bits, max 3.32) ↑ |\n"
        "|---|---|---|---|---|---|\n"
    )

    def line(name: str, m: dict[str, Any]) -> str:
        return (
            f"| {name} | {m['fid']:.2f} | {1e3 * m['kid']:.1f} ± {1e3 * m['kid_std']:.1f} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} | {m['coverage_entropy']:.3f} |\n"
        )

    body = "".join(line(name, m) for name, m in rows.items())
    if floor_row is not None:
        body += line("floor: 10k training images", floor_row)
    return head + body


def _load_samples(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    path = Path(args.samples)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            key = "samples" if "samples" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise ValueError(f"{path} holds {keys}; name the array 'samples'")
            samples = torch.from_numpy(npz[key])
        if args.dataset is None:
            raise ValueError("give --dataset (mnist or fashion-mnist) for an .npz of samples")
        return samples[: args.num_samples], args.dataset
    if path.suffix != ".safetensors" or args.model is None:
        raise ValueError(
            "give an .npz of samples, or a .safetensors checkpoint with --model package.module:Class"
        )
    from shared_utils.checkpoints import load_model, read_sidecar

    project = path.resolve().parent.parent
    if (project / "project.toml").exists() and str(project) not in sys.path:
        sys.path.insert(0, str(project))
    module, _, name = args.model.partition(":")
    cls = getattr(importlib.import_module(module), name)
    model = load_model(path, cls)
    dataset = args.dataset or read_sidecar(path)["train"].get("dataset")
    if dataset is None:
        raise ValueError(f"{path}'s sidecar names no dataset; give --dataset")
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        chunks = [
            model.sample(min(FEATURE_BATCH, args.num_samples - i), generator=generator)
            for i in range(0, args.num_samples, FEATURE_BATCH)
        ]
    return torch.cat(chunks), dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared_utils.sample_quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument("samples", help="an .npz of images, or a generator's .safetensors")
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default=None)
    parser.add_argument("--model", default=None, help="package.module:Class of a checkpoint")
    parser.add_argument("--num-samples", type=int, default=PROTOCOL_N)
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and KID subsets")
    args = parser.parse_args(argv)
    from shared_utils.checkpoints import CheckpointError
    from shared_utils.data import DataError

    try:
        samples, dataset = _load_samples(args)
        result = evaluate(samples, dataset, seed=args.seed)
    except (ValueError, ImportError, AttributeError, DataError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    note = "" if len(samples) == PROTOCOL_N else f" (not the protocol's {PROTOCOL_N})"
    print(f"{len(samples)} samples{note} against the {dataset} test set:")
    print(table({Path(args.samples).stem: result}, floor(dataset)))
    print("class histogram:", result["class_histogram"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "as_images",
    "class_coverage",
    "evaluate",
    "fid",
    "fid_from_features",
    "floor",
    "image_features",
    "kid_from_features",
    "metrics_from_features",
    "precision_recall",
    "reference_features",
    "table",
]
