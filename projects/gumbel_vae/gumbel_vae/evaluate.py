"""Evaluate a checkpoint on the fixed-binarized MNIST test set: test NLL (IWAE bound), ELBO, KL.

    python -m gumbel_vae.evaluate checkpoints/gumbel_vae.safetensors --k 1000   # the paper's k
    python -m gumbel_vae.evaluate checkpoints/gumbel_vae.safetensors --k 100 --eval-n 1000
    python -m gumbel_vae.evaluate checkpoints/gumbel_vae.safetensors --k 1000 --write

Origin: written for dgm-course (MIT licence).

The NLL is minus the IWAE bound (Burda et al. Eq. 8) of the discrete model, with ``--k`` exact
samples z ~ q(z | x) drawn by the Gumbel-Max trick (Jang Eq. 1): an upper bound on -log p(x) for
any k (Jang et al. evaluate with 1000 samples). The ELBO is that of the discrete model, with the
categorical KL in closed form. Averages over the first ``--eval-n`` test images of the repo's
fixed seeded binarization (``shared_utils.data.evaluation_inputs``), after
``torch.manual_seed(--seed)``.
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
from shared_utils.training import evaluating, progress

from .model import DATASET, EVAL_K, METRIC, METRIC_LABEL, Model


def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 100,
    k: int = EVAL_K,
    chunk: int = 50,
    show_progress: bool = False,
) -> dict[str, float]:
    """The mean over the rows of ``x`` of each metric of ``model.evaluate``, batch by batch."""
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    starts = range(0, x.shape[0], batch_size)
    with evaluating(model):
        for i in progress(starts, desc=f"IWAE-{k}", disable=not show_progress):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            for name, values in model.evaluate(xb, yb, k=k, chunk=chunk).items():
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
    means = evaluate(model, x, y, args.batch_size, args.k, args.chunk, show_progress=True)
    wall = time.perf_counter() - start
    n = x.shape[0]
    print(f"{METRIC_LABEL}, k={args.k}: {means[METRIC]:.2f} ({n} {dataset} test images)")
    print(f"test ELBO: {means['elbo']:.2f}, KL(q || p): {means['kl']:.2f}")
    print(f"wall time: {wall:.0f} s")
    suffix = subset_suffix(n, total)
    return {
        f"test_nll_iwae_k{args.k}{suffix}": round(means[METRIC], 3),
        f"test_elbo{suffix}": round(means["elbo"], 3),
        f"test_kl{suffix}": round(means["kl"], 3),
        f"evaluation_k{args.k}{suffix}": {
            "n_test": n,
            "dataset": dataset,
            "test_set": "MNIST test, fixed binarization (shared_utils.data)",
            "seed": args.seed,
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": f"python -m {__package__}.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, f"python -m {__package__}.evaluate")
    parser.add_argument("--k", type=int, default=EVAL_K, help="importance samples for the NLL")
    parser.add_argument("--chunk", type=int, default=50, help="importance samples drawn at a time")
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
