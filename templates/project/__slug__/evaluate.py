"""Evaluate a checkpoint on the test set of the dataset it was trained on (Model.evaluate).

    python -m __slug__.evaluate checkpoints/__slug__.safetensors             # all test images
    python -m __slug__.evaluate checkpoints/__slug__.safetensors --eval-n 500
    python -m __slug__.evaluate checkpoints/__slug__.safetensors --write     # into the sidecar

Origin: written for dgm-course (MIT licence).

Prints the mean of every per-example metric of ``Model.evaluate`` (model.py) over the first
``--eval-n`` test images of the checkpoint's ``--dataset`` (read from its sidecar; the test images
are deterministic, see ``shared_utils.data.evaluation_inputs``). A stochastic estimator draws its
random numbers after ``torch.manual_seed(--seed)``. Add the estimator's own options (e.g. a number
of importance samples) to the parser in ``main``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import evaluation_inputs
from shared_utils.runs import eval_cli, eval_parser, subset_suffix
from shared_utils.training import evaluating

from .model import DATASET, METRIC, METRIC_LABEL, Model


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 100
) -> dict[str, float]:
    """The mean over the rows of ``x`` of each metric of ``model.evaluate``, batch by batch."""
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    with evaluating(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            for name, values in model.evaluate(xb, yb).items():
                sums[name] = sums.get(name, 0.0) + values.double().sum().item()
    return {name: total / x.shape[0] for name, total in sums.items()}


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, Model, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset", DATASET)
    x, y = evaluation_inputs(dataset, "test")
    total = x.shape[0]
    x, y = x[: args.eval_n], y[: args.eval_n]
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    means = evaluate(model, x, y, args.batch_size)
    wall = time.perf_counter() - start
    n = x.shape[0]
    if not means:
        print("Model.evaluate returns no metric: nothing to report")
        return {}
    if METRIC in means:
        print(f"{METRIC_LABEL}: {means[METRIC]:.2f} ({n} {dataset} test images)")
    for name, value in means.items():
        print(f"test {name}: {value:.4f}")
    suffix = subset_suffix(n, total)
    return {
        **{f"test_{name}{suffix}": round(value, 4) for name, value in means.items()},
        f"evaluation{suffix}": {
            "n_test": n,
            "dataset": dataset,
            "seed": args.seed,
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": f"python -m {__package__}.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, f"python -m {__package__}.evaluate")
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
