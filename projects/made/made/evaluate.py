"""Exact test NLL of a MADE checkpoint, for one mask and for the K-mask ensemble.

MADE's likelihood is exact: -log p(x) = sum_d BCE(x_d, x_hat_d) for one mask, and for an ensemble
of K masks -log p(x) = -log (1/K) sum_i p_i(x) (log-mean-exp over masks). The data are the repo's
fixed binarization of the full 10k MNIST test set (not the Larochelle-Murray static split). The
results are written into the checkpoint's sidecar.

    python -m made.evaluate checkpoints/made_2x500_32masks.safetensors --masks 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from made.model import MADE
from shared_utils.checkpoints import CheckpointError, load_checkpoint, update_metrics
from shared_utils.data import DataError, fixed_binarized_mnist
from shared_utils.metrics import dataset_mean, nats_to_bits_per_dim


def load_made(path: str | Path) -> MADE:
    """Rebuild a MADE (and its masks, from the stored mask seed) from a checkpoint."""
    ckpt = load_checkpoint(path)
    cfg = {k: v for k, v in ckpt.config.items() if k != "run"}
    model = MADE(**cfg)
    load_checkpoint(path, model=model)
    return model.eval()


def test_nll(model: MADE, data: torch.Tensor, masks: int = 1, batch_size: int = 1000) -> float:
    """Exact mean NLL (nats) of ``data`` under the ensemble of the first ``masks`` masks."""
    data = data.reshape(data.shape[0], -1)
    with torch.no_grad():
        return dataset_mean(lambda x: -model.ensemble_log_prob(x, masks), data, batch_size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m made.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "--masks",
        type=int,
        default=None,
        help="ensemble size K (default: all the masks the model was trained with)",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="do not update the sidecar")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_made(args.checkpoint)
        data = fixed_binarized_mnist("test")
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    k = model.num_masks if args.masks is None else args.masks
    if not 1 <= k <= model.num_masks:
        print(
            f"error: --masks {k}: this model was trained with {model.num_masks} mask(s); "
            f"choose 1..{model.num_masks}",
            file=sys.stderr,
        )
        return 1
    if args.limit:
        data = data[: args.limit]
    subset = "full test set" if len(data) == 10_000 else f"first {len(data)} test images"
    results = {}
    for masks in sorted({1, k}):
        t0 = time.perf_counter()
        nll = test_nll(model, data, masks, args.batch_size)
        seconds = time.perf_counter() - t0
        bpd = float(nats_to_bits_per_dim(nll, data[0].numel()))
        print(
            f"{masks:3d} mask(s): test NLL {nll:.2f} nats ({bpd:.4f} bits/dim), {subset}, {seconds:.0f} s"
        )
        results[masks] = nll
    if not args.no_write and len(data) == 10_000:
        update_metrics(
            args.checkpoint,
            **{f"test_nll_{m}mask{'s' if m > 1 else ''}": round(v, 2) for m, v in results.items()},
            test_set="fixed_binarized_mnist('test'), 10000 images, exact NLL",
        )
        print(f"wrote metrics to {args.checkpoint.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
