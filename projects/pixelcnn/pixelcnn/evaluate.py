"""Exact test NLL of a checkpoint on the full fixed-binarized MNIST test set (10,000 images).

The NLL is exact (Eq. 1 of the Pixel RNN paper summed over the 784 pixels, one forward pass per
batch), so no estimator or sample count is involved. The result is written into the checkpoint's
sidecar with ``update_metrics``:

    python -m pixelcnn.evaluate checkpoints/gated_cond.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from pixelcnn.autoregressive import test_nll
from pixelcnn.model import build_model
from shared_utils.checkpoints import CheckpointError, load_checkpoint, update_metrics
from shared_utils.data import DataError, fixed_binarized_mnist, mnist_tensors
from shared_utils.metrics import nats_to_bits_per_dim


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model described by a checkpoint's sidecar and load its weights (eval mode)."""
    try:
        config = load_checkpoint(path).config
        model = build_model(config)
        load_checkpoint(path, model)
    except (CheckpointError, KeyError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    return model.eval(), config


def evaluate(
    model: torch.nn.Module,
    config: dict[str, Any],
    n: int | None = None,
    batch_size: int = 100,
    marginal: bool = False,
) -> float:
    """Mean exact NLL (nats/image) on the first ``n`` (default all) fixed-binarized test images.

    For a class-conditional model this is ``-log p(x | y)`` with the true label, or, with
    ``marginal=True``, ``-log p(x)`` with the label summed out (10 forward passes per image).
    """
    x = fixed_binarized_mnist("test")
    _, y = mnist_tensors("test")
    if n is not None:
        x, y = x[:n], y[:n]
    conditional = bool(config.get("conditional"))
    if marginal and not conditional:
        raise SystemExit("error: --marginal needs a class-conditional checkpoint")
    return test_nll(model, x, y if conditional else None, batch_size, marginal=marginal)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pixelcnn.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--n", type=int, default=None, help="first N test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="do not update the sidecar")
    p.add_argument(
        "--marginal",
        action="store_true",
        help="conditional model: -log p(x) with the label summed out (10x slower)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, config = load_model(args.checkpoint)
    start = time.perf_counter()
    try:
        nll = evaluate(model, config, args.n, args.batch_size, args.marginal)
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    seconds = time.perf_counter() - start
    n = args.n or 10_000
    bpd = nats_to_bits_per_dim(nll, 784)
    what = "-log p(x), label summed out" if args.marginal else "exact"
    if config.get("conditional") and not args.marginal:
        what = "-log p(x | label), exact"
    print(
        f"test NLL ({n} fixed-binarized test images, {what}): {nll:.2f} nats ({bpd:.4f} bits/dim)"
    )
    print(f"evaluated in {seconds:.1f} s")
    if not args.no_write:
        key = "test_nll_marginal_nats" if args.marginal else "test_nll_nats"
        if args.n is not None:
            key += f"_first{n}"
        update_metrics(
            args.checkpoint,
            **{key: round(nll, 3)},
            test_set="fixed_binarized_mnist('test')",
            test_estimator="exact (sum of per-pixel Bernoulli NLLs)",
        )
        print(f"wrote {key} into {args.checkpoint.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
