"""Exact test NLL of a checkpoint on the fixed-binarized MNIST test set (10,000 images).

    python -m pixelcnn.evaluate checkpoints/gated_cond.safetensors              # all 10,000
    python -m pixelcnn.evaluate checkpoints/gated_cond.safetensors --marginal --eval-n 1000
    python -m pixelcnn.evaluate checkpoints/pixelcnn.safetensors --write        # into the sidecar

The NLL is exact (Eq. 1 of the Pixel RNN paper summed over the 784 pixels, one forward pass per
batch), so no estimator, sample count or seed is involved. For a class-conditional model it is
``-log p(x | y)`` with the true label, or with ``--marginal`` ``-log p(x)`` with the label summed
out under a uniform prior (10 forward passes per image).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from pixelcnn.autoregressive import test_nll
from pixelcnn.model import build_model
from shared_utils.checkpoints import load_model
from shared_utils.data import fixed_binarized_mnist, mnist_tensors
from shared_utils.metrics import nats_to_bits_per_dim
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix


def evaluate(
    model: torch.nn.Module, n: int | None = None, batch_size: int = 100, marginal: bool = False
) -> float:
    """Mean exact NLL (nats per image) on the first ``n`` (default all) fixed-binarized test images.

    ``marginal=True`` (class-conditional models only) sums the label out: ``-log p(x)``.
    """
    conditional = model.n_classes > 0
    if marginal and not conditional:
        raise RunError("--marginal needs a class-conditional checkpoint (n_classes > 0)")
    x = fixed_binarized_mnist("test")[:n]
    y = mnist_tensors("test")[1][:n] if conditional else None
    return test_nll(model, x, y, batch_size, marginal=marginal)


def _command(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.checkpoint, build_model, map_location=args.device)
    start = time.perf_counter()
    nll = evaluate(model, args.eval_n, args.batch_size, args.marginal)
    seconds = time.perf_counter() - start
    n = min(args.eval_n or 10_000, 10_000)
    if args.marginal:
        what = "-log p(x), label summed out"
    else:
        what = "-log p(x | label), exact" if model.n_classes else "exact"
    bpd = nats_to_bits_per_dim(nll, 784)
    print(
        f"test NLL ({n} fixed-binarized test images, {what}): {nll:.2f} nats ({bpd:.4f} bits/dim)"
    )
    print(f"evaluated in {seconds:.1f} s ({args.threads} thread(s), batch {args.batch_size})")
    name = "test_nll_marginal_nats" if args.marginal else "test_nll_nats"
    return {
        f"{name}{subset_suffix(n, 10_000)}": round(nll, 3),
        "test_set": "fixed_binarized_mnist('test')",
        "test_estimator": "exact (sum of per-pixel Bernoulli NLLs)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = eval_parser(__doc__, "python -m pixelcnn.evaluate")
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="class-conditional model: -log p(x) with the label summed out (10x slower)",
    )
    return eval_cli(parser, _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
