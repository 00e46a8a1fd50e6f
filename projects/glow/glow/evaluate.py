"""Evaluate a Glow checkpoint: test bits/dim of the 8-bit images of the dataset it was trained on.

    python -m glow.evaluate checkpoints/glow_mnist.safetensors              # all 10,000 test images
    python -m glow.evaluate checkpoints/glow_mnist.safetensors --eval-n 500 # quick
    python -m glow.evaluate checkpoints/glow_mnist.safetensors --write      # into the sidecar

The test images (the checkpoint's ``train.dataset``: mnist or fashion-mnist) are dequantized once
with uniform noise drawn from a generator seeded with ``--seed`` (``glow.model.dequantize``), and
the bits/dim -(log p(y) - D log 256) / (D ln 2) are averaged over them. One draw of the noise per
image gives an unbiased estimate of the dequantized NLL, which bounds the discrete NLL from above
(Theis, van den Oord & Bethge, ICLR 2016); it is the estimator of the paper and of the number it
is compared with (Glow on MNIST, 1.05 bits/dim, as quoted in FFJORD's Table 2: Grathwohl et al.,
ICLR 2019). Same seed and N: the same noise, so the same number on one machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from glow.model import Glow, dequantize
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import dataset_tensors
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix
from shared_utils.training import evaluating, progress

DATASETS = ("mnist", "fashion-mnist")
# The comparator for MNIST: Glow's bits/dim as quoted by Grathwohl et al. (FFJORD), Table 2; the
# Glow paper itself reports no MNIST number.
PAPER_BPD = {"mnist": (1.05, "Glow, as quoted in FFJORD (Grathwohl et al., ICLR 2019), Table 2")}


def mean_bits_per_dim(
    model: Glow, x: torch.Tensor, batch_size: int = 500, show_progress: bool = False
) -> float:
    """Mean bits/dim over the rows of the dequantized images ``x`` ``[N, C, H, W]``."""
    device = next(model.parameters()).device
    total = 0.0
    starts = range(0, x.shape[0], batch_size)
    with evaluating(model):
        for i in progress(starts, desc="bits/dim", disable=not show_progress):
            total += model.bits_per_dim(x[i : i + batch_size].to(device)).double().sum().item()
    return total / x.shape[0]


def held_out_inputs(dataset: str, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The first ``n`` (all if None) test images of ``dataset``, dequantized with one draw of
    uniform noise from a generator seeded with ``seed``."""
    images, _ = dataset_tensors(dataset, "test")
    return dequantize(images[:n], torch.Generator().manual_seed(seed))


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, Glow, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset")
    if dataset not in DATASETS:
        raise RunError(f"{args.checkpoint}: its sidecar names dataset {dataset!r}, not {DATASETS}")
    x = held_out_inputs(dataset, args.eval_n, args.seed)
    start = time.perf_counter()
    bpd = mean_bits_per_dim(model, x, args.batch_size, show_progress=True)
    wall = time.perf_counter() - start
    n = x.shape[0]
    print(
        f"test bits/dim ({n} {dataset} test images, one uniform dequantization, seed "
        f"{args.seed}): {bpd:.4f}"
    )
    if dataset in PAPER_BPD:
        value, source = PAPER_BPD[dataset]
        print(f"comparator: {value:.2f} bits/dim ({source}; full test set)")
    print(f"wall time: {wall:.0f} s")
    suffix = subset_suffix(n, 10_000)
    return {
        f"test_bpd{suffix}": round(bpd, 4),
        f"evaluation{suffix}": {
            "n_test": n,
            "dataset": dataset,
            "estimator": "bits/dim of the 8-bit images, one uniform dequantization per image",
            "seed": args.seed,
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": "python -m glow.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, "python -m glow.evaluate")
    parser.set_defaults(batch_size=500)
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
