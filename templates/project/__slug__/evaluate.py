"""Exact test NLL (eq. 2 of model.py) of a checkpoint on the fixed-binarized MNIST test set.

Origin: written for dgm-course (MIT licence).

The test set uses the repo's fixed binarization (shared_utils.data), not the Larochelle & Murray
static split, so the number is comparable to the papers' only approximately.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from shared_utils.checkpoints import CheckpointError, load_checkpoint, read_sidecar, update_metrics
from shared_utils.data import fixed_binarized_mnist

from .model import IndependentBernoulli


@torch.no_grad()
def test_nll(model: IndependentBernoulli, x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean -log p(x) in nats over the rows of ``x``."""
    total = sum(model.nll(x[i : i + batch_size]).sum().item() for i in range(0, len(x), batch_size))
    return total / len(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=f"python -m {__package__}.evaluate", description=__doc__.splitlines()[0]
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--subset", type=int, help="only the first N test images")
    p.add_argument("--write", action="store_true", help="store the result in the sidecar")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        config = read_sidecar(args.checkpoint)["config"]
        model = IndependentBernoulli(**config["model"])
        load_checkpoint(args.checkpoint, model)
    except (CheckpointError, KeyError, TypeError) as err:
        print(f"error: cannot load {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    x = fixed_binarized_mnist("test")
    if args.subset:
        x = x[: args.subset]
    nll = test_nll(model, x)
    print(f"test NLL: {nll:.2f} nats ({len(x)} images, exact)")
    if args.write:
        update_metrics(args.checkpoint, test_nll_nats=round(nll, 4), test_images=len(x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
