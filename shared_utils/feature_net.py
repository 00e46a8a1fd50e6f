"""The course's feature networks: one small CNN classifier per dataset, trained in this repo.

Origin: written for dgm-course (MIT licence).

Why: sample-quality metrics (FID, KID, precision/recall) compare generated and real images in the
feature space of a network. The usual Inception-v3 features are for 299x299 colour photographs,
need a download, and say little about 28x28 digits; the common practice for MNIST-like data is a
classifier trained on the dataset itself. Its penultimate layer (``FeatureNet.features``, 128
numbers after a ReLU) gives the features, its softmax the predicted class used for class coverage.

Architecture: two VGG-style blocks (two 3x3 convolutions with batch norm and ReLU, then 2x2 max
pooling: 28 -> 14 -> 7), a 128-unit fully connected layer, dropout, and the 10-way output. Trained
with Adam and a one-cycle learning rate on the 60,000 training images, with small random shifts
(up to 2 pixels) and, for Fashion-MNIST, horizontal flips. The features are divided by one
constant, their root-mean-square over the training images, so that they are of order 1. The
weights ship in
``shared_utils/weights/feature_net_<dataset>.safetensors``; the sidecar holds the command, the
test accuracy and the training time.

    python -m shared_utils.feature_net --dataset mnist --epochs 6 --threads 2 \
        --out runs/feature_net_mnist --ship shared_utils/weights/feature_net_mnist.safetensors
    python -m shared_utils.feature_net --dataset fashion-mnist --epochs 15 --threads 2 \
        --out runs/feature_net_fashion-mnist \
        --ship shared_utils/weights/feature_net_fashion-mnist.safetensors
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.checkpoints import load_model
from shared_utils.data import dataset_tensors, evaluation_inputs
from shared_utils.paths import REPO_ROOT
from shared_utils.runs import Run, RunConfig, cli, flag
from shared_utils.training import adam, evaluating

FEATURE_DATASETS = ("mnist", "fashion-mnist")
WEIGHTS_DIR = REPO_ROOT / "shared_utils" / "weights"


def weights_path(dataset: str) -> Path:
    """Where the shipped feature network of ``dataset`` lives."""
    return WEIGHTS_DIR / f"feature_net_{dataset}.safetensors"


class FeatureNet(nn.Module):
    """Classifier of 28x28 grey images in [0, 1]; ``features`` is the penultimate layer."""

    def __init__(self, width: int = 16, feature_dim: int = 128, n_classes: int = 10):
        super().__init__()
        self.width, self.feature_dim, self.n_classes = width, feature_dim, n_classes
        self.num_features = feature_dim  # what torchmetrics reads from a custom feature extractor

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(
            block(1, width),
            block(width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, n_classes)
        # Set once after training (``calibrate``): features are divided by their root-mean-square
        # over the training images, so that they are O(1) as KID's kernel (x.y/d + 1)^3 assumes.
        self.register_buffer("feature_rms", torch.ones(()))

    def config(self) -> dict[str, int]:
        return {"width": self.width, "feature_dim": self.feature_dim, "n_classes": self.n_classes}

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 28, 28]`` images in [0, 1] -> the penultimate layer's activations."""
        return self.body(2.0 * x - 1.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer scaled by the constant ``1 / feature_rms``: the metrics' features."""
        return self.hidden(x) / self.feature_rms

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from :meth:`features` (the scale undone)."""
        return self.head(features * self.feature_rms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.dropout(self.hidden(x)))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, batch_size: int = 1000) -> None:
        """Set ``feature_rms`` to the root-mean-square of the penultimate layer over images ``x``."""
        with evaluating(self):
            total = sum(
                float(self.hidden(x[i : i + batch_size]).double().pow(2).sum())
                for i in range(0, len(x), batch_size)
            )
        self.feature_rms.fill_((total / (len(x) * self.feature_dim)) ** 0.5)


@cache
def feature_network(dataset: str) -> FeatureNet:
    """The shipped feature network of ``dataset`` (eval mode, CPU), loaded once per process."""
    if dataset not in FEATURE_DATASETS:
        raise ValueError(
            f"no feature network for dataset {dataset!r}; choose one of {', '.join(FEATURE_DATASETS)}"
        )
    net = load_model(weights_path(dataset), FeatureNet)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def augment(x: torch.Tensor, flips: bool, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 2 pixels (zero padding), and flip half of them if ``flips``."""
    n = x.shape[0]
    shifts = torch.randint(-2, 3, (n, 2), generator=generator)
    padded = F.pad(x, (2, 2, 2, 2))
    offsets = torch.arange(28) + 2
    rows = (offsets[None, :] + shifts[:, :1]).view(n, 1, 28, 1).expand(n, 1, 28, 32)
    cols = (offsets[None, :] + shifts[:, 1:]).view(n, 1, 1, 28).expand(n, 1, 28, 28)
    shifted = padded.gather(2, rows).gather(3, cols)
    if flips:
        flip = torch.rand(n, generator=generator) < 0.5
        shifted = torch.where(flip.view(n, 1, 1, 1), shifted.flip(-1), shifted)
    return shifted


@torch.no_grad()
def accuracy(net: FeatureNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    with evaluating(net):
        correct = sum(
            int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
            for i in range(0, len(x), batch_size)
        )
    return correct / len(x)


@dataclass
class TrainConfig(RunConfig):
    dataset: str = flag("mnist", "the dataset to classify", choices=FEATURE_DATASETS)
    width: int = flag(16, "channels of the first block (the second has twice as many)")
    feature_dim: int = flag(128, "units of the penultimate layer: the features")
    batch_size: int = flag(128, "images per step")
    lr: float = flag(3e-3, "peak learning rate of the one-cycle schedule")
    weight_decay: float = flag(5e-4, "decoupled weight decay (AdamW)")
    epochs: int = flag(6, "epochs; the one-cycle schedule spans them")
    eval_n: int = flag(10_000, "test images scored after each epoch")
    out: Path = flag(Path("runs/feature_net"), "run folder")


def train(cfg: TrainConfig) -> Path:
    """Train the feature network of ``cfg.dataset``; return the shipped (or last) checkpoint."""
    run = Run(cfg)
    images, labels = dataset_tensors(cfg.dataset, "train")
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = evaluation_inputs(cfg.dataset, "test")
    x_test, y_test = x_test[: cfg.eval_n], y_test[: cfg.eval_n]

    net = FeatureNet(cfg.width, cfg.feature_dim).to(run.device)
    optimizer = adam(
        net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled_weight_decay=True
    )
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
    )
    run.start(net, net.config(), optimizer=optimizer, schedule=schedule)
    flips = cfg.dataset == "fashion-mnist"

    for x, y in run.batches(images, labels, batch_size=cfg.batch_size):
        x = augment(x.float() / 255.0, flips, run.generator).to(run.device)
        loss = F.cross_entropy(net(x), y.to(run.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule.last_epoch < schedule.total_steps - 1:
            schedule.step()
        run.log(loss=loss.item())
        if run.epoch_done and cfg.eval_n:
            run.log_eval(test_accuracy=accuracy(net, x_test.to(run.device), y_test.to(run.device)))
    net.calibrate(images.float().div(255.0).to(run.device))
    return run.finish({"test_accuracy": accuracy(net, x_test, y_test)})


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
