"""Exact test NLL of a MADE checkpoint, for one mask and for the K-mask ensemble.

    python -m made.evaluate checkpoints/made_2x500_32masks.safetensors --masks 32
    python -m made.evaluate checkpoints/made_2x500_32masks.safetensors --eval-n 500   # quick
    python -m made.evaluate checkpoints/made_2x500_32masks.safetensors --write        # into the sidecar

MADE's likelihood is exact: -log p(x) = sum_d BCE(x_d, x_hat_d) for one mask, and for an ensemble
of K masks -log p(x) = -log (1/K) sum_i p_i(x) (log-mean-exp over masks). The data are the repo's
fixed binarization of the MNIST test set (``shared_utils.data.fixed_binarized_mnist``; not the
Larochelle-Murray static split), all 10,000 images unless ``--eval-n`` says fewer.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from made.model import MADE
from shared_utils.checkpoints import load_model
from shared_utils.data import fixed_binarized_mnist
from shared_utils.metrics import dataset_mean, nats_to_bits_per_dim
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix


def test_nll(model: MADE, data: torch.Tensor, masks: int = 1, batch_size: int = 1000) -> float:
    """Exact mean NLL (nats) of ``data`` under the ensemble of the first ``masks`` masks."""
    device = next(model.parameters()).device
    data = data.reshape(data.shape[0], -1)
    with torch.no_grad():
        return dataset_mean(
            lambda x: -model.ensemble_log_prob(x.to(device), masks), data, batch_size
        )


def _masks(k: int) -> str:
    return f"{k}mask{'s' if k > 1 else ''}"


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, MADE, map_location=args.device)
    k = model.num_masks if args.masks is None else args.masks
    if not 1 <= k <= model.num_masks:
        raise RunError(
            f"--masks {k}: this model was trained with {model.num_masks} mask(s); choose "
            f"1..{model.num_masks}"
        )
    data = fixed_binarized_mnist("test")[: args.eval_n]
    n = data.shape[0]
    subset = "full test set" if n == 10_000 else f"first {n} test images"
    suffix = subset_suffix(n, 10_000)
    metrics: dict[str, Any] = {}
    t0 = time.perf_counter()
    for masks in sorted({1, k}):
        t_masks = time.perf_counter()
        nll = test_nll(model, data, masks, args.batch_size)
        bpd = float(nats_to_bits_per_dim(nll, data[0].numel()))
        print(
            f"{masks:3d} mask(s): test NLL {nll:.2f} nats ({bpd:.4f} bits/dim), {subset}, "
            f"{time.perf_counter() - t_masks:.0f} s"
        )
        metrics[f"test_nll_{_masks(masks)}{suffix}"] = round(nll, 2)
    metrics[f"eval_{_masks(k)}{suffix}"] = {
        "n_test": n,
        "test_set": "MNIST test, fixed binarization (shared_utils.data), exact NLL",
        "wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads,
        "command": "python -m made.evaluate " + shlex.join(argv),
    }
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = eval_parser(__doc__, "python -m made.evaluate")
    p.add_argument(
        "--masks",
        type=int,
        default=None,
        help="ensemble size K (if not given: all the model's masks)",
    )
    p.set_defaults(batch_size=1000)
    return eval_cli(p, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
