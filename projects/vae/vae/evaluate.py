"""Evaluate a checkpoint on the fixed-binarized MNIST test set: test NLL and ELBO.

    python -m vae.evaluate checkpoints/vae_k1.safetensors --k 5000
    python -m vae.evaluate checkpoints/vae_k1.safetensors --k 100 --eval-n 500   # quick
    python -m vae.evaluate checkpoints/vae_k1.safetensors --k 5000 --write       # into the sidecar

The NLL is minus the IWAE bound with k samples (Burda et al. Sec. 5 use k = 5000), averaged over
the first ``--eval-n`` test images (all 10,000 by default); the ELBO uses Kingma & Welling's Eq. 10
with ``--elbo-k`` samples. The test images use the repo's fixed seeded binarization
(``shared_utils.data.fixed_binarized_mnist``) so the numbers are deterministic given ``--seed``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from shared_utils.checkpoints import load_model
from shared_utils.data import fixed_binarized_mnist
from shared_utils.runs import eval_cli, eval_parser, subset_suffix
from shared_utils.training import evaluating, progress
from vae.model import VAE
from vae.objectives import elbo, estimate_log_likelihood


def evaluate(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    elbo_k: int = 10,
    batch_size: int = 100,
    chunk: int = 50,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, float]:
    """Mean test log-likelihood estimate (IWAE-k) and mean ELBO over ``x`` [N, ...], in nats."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    x = x.reshape(x.shape[0], -1)
    ll_sum, elbo_sum = 0.0, 0.0
    starts = range(0, x.shape[0], batch_size)
    with evaluating(model):
        for start in progress(starts, desc=f"IWAE-{k}", disable=not show_progress):
            xb = x[start : start + batch_size].to(device)
            ll_sum += estimate_log_likelihood(model, xb, k=k, chunk=chunk).double().sum().item()
            elbo_sum += elbo(model, xb, k=elbo_k).double().sum().item()
    n = x.shape[0]
    return {"nll": -ll_sum / n, "elbo": elbo_sum / n}


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, VAE, map_location=args.device)
    x = fixed_binarized_mnist("test")[: args.eval_n]
    t0 = time.perf_counter()
    result = evaluate(
        model, x, args.k, args.elbo_k, args.batch_size, args.chunk, args.seed, show_progress=True
    )
    wall = time.perf_counter() - t0
    n = x.shape[0]
    print(
        f"test NLL (IWAE bound, k={args.k}, {n} fixed-binarized test images): {result['nll']:.2f}"
    )
    print(f"test ELBO (Kingma & Welling Eq. 10, {args.elbo_k} samples): {result['elbo']:.2f}")
    print(f"wall time: {wall:.0f} s")
    suffix = subset_suffix(n, 10_000)
    return {
        f"test_nll_iwae_k{args.k}{suffix}": round(result["nll"], 3),
        f"test_elbo{suffix}": round(result["elbo"], 3),
        f"eval_k{args.k}{suffix}": {
            "n_test": n,
            "test_set": "MNIST test, fixed binarization (shared_utils.data)",
            "seed": args.seed,
            "elbo_k": args.elbo_k,
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": "python -m vae.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = eval_parser(__doc__, "python -m vae.evaluate")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the NLL")
    p.add_argument("--elbo-k", type=int, default=10, help="samples for the test ELBO")
    p.add_argument("--chunk", type=int, default=50, help="importance samples drawn at a time")
    return eval_cli(p, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
