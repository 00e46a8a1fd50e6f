"""Evaluate a checkpoint: the bits/dim bound, reconstruction error, codebook usage, sample quality.

    python -m vqvae.evaluate checkpoints/vqvae_mnist.safetensors                   # everything
    python -m vqvae.evaluate runs/vqvae_mnist.safetensors --num-samples 0          # stage 1 only
    python -m vqvae.evaluate CHECKPOINT --eval-n 500 --num-samples 2000            # quicker
    python -m vqvae.evaluate CHECKPOINT --write                                    # into the sidecar

Origin: written for dgm-course (MIT licence).

On the first ``--eval-n`` test images of the checkpoint's dataset (all 10,000 by default):

* ``bits_per_dim``: the bound -log2 p(x | z_q(x)) - log2 p(z) per pixel, with the trained prior
  (model.py); ``bits_per_dim_uniform_prior`` the same with the uniform prior of stage 1, i.e. the
  paper's training bound (KL = 49 log K); ``recon_bits_per_dim`` and ``prior_nll_nats`` its
  terms. The decoder's likelihood is the discretised logistic over the 256 grey levels
  (networks.py), so these are bits/dim of the discrete images;
* ``mse``: squared error per pixel of the reconstruction (the decoder's mean), images in [0, 1];
* ``codes_used`` (of K) and ``perplexity`` = exp(entropy) of the codes of those images.

Then, unless ``--num-samples 0``, the course's sample-quality protocol
(``shared_utils.sample_quality``): ``--num-samples`` images (10,000 by default) drawn from the
prior with a generator seeded with ``--seed`` and decoded, against the 10,000 test images, FID,
KID, precision/recall and class coverage, each next to its floor (10,000 training images). The
sample metrics are only meaningful for a stage-2 checkpoint (a trained prior).
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
from .quantizer import usage_and_perplexity

PROTOCOL_N = 10_000
QUALITY = ("fid", "kid", "kid_std", "precision", "recall", "coverage_entropy", "class_histogram")


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


def codebook_usage(model: Model, x: torch.Tensor, batch_size: int = 1000) -> tuple[int, float]:
    """How many of the K codes the images ``x`` use, and the perplexity of their frequencies."""
    device = next(model.parameters()).device
    with evaluating(model):
        codes = torch.cat(
            [model.encode(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
        )
    return usage_and_perplexity(codes, model.num_codes)


@torch.no_grad()
def draw(model: Model, n: int, seed: int = 0, batch_size: int = 2000) -> torch.Tensor:
    """``n`` samples (prior, then decoder), batch by batch from one generator seeded ``seed``."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with evaluating(model):
        return torch.cat(
            [
                model.sample(min(batch_size, n - i), generator=generator).cpu()
                for i in range(0, n, batch_size)
            ]
        )


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, Model, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset", DATASET)
    x, y = evaluation_inputs(dataset, "test")
    total = x.shape[0]
    x, y = x[: args.eval_n], y[: args.eval_n]
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    means = evaluate(model, x, y, args.batch_size)
    used, perplexity = codebook_usage(model, x)
    wall = time.perf_counter() - start
    n = x.shape[0]
    print(f"{METRIC_LABEL}: {means[METRIC]:.3f} ({n} {dataset} test images)")
    for name, value in means.items():
        print(f"test {name}: {value:.4f}")
    print(f"codes used: {used} of {model.num_codes}, perplexity {perplexity:.1f}")
    suffix = subset_suffix(n, total)
    command = f"python -m {__package__}.evaluate " + shlex.join(argv)
    results: dict[str, Any] = {
        **{f"test_{name}{suffix}": round(value, 4) for name, value in means.items()},
        f"test_codes_used{suffix}": used,
        f"test_perplexity{suffix}": round(perplexity, 2),
        f"evaluation{suffix}": {
            "n_test": n,
            "dataset": dataset,
            "seed": args.seed,
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": command,
        },
    }
    if args.num_samples:
        from shared_utils import sample_quality

        start = time.perf_counter()
        samples = draw(model, args.num_samples, args.seed)
        sample_wall = time.perf_counter() - start
        metrics = sample_quality.evaluate(samples, dataset)
        floor = sample_quality.floor(dataset)
        print(
            f"{args.num_samples} samples (seed {args.seed}, drawn in {sample_wall:.0f} s) against "
            f"the {dataset} test set:"
        )
        print(sample_quality.table({args.checkpoint.stem: metrics}, floor))
        print("class histogram of the samples:", _rounded(metrics["class_histogram"]))
        q = "" if args.num_samples == PROTOCOL_N else f"_n{args.num_samples}"
        results.update({f"{k}{q}": _rounded(metrics[k]) for k in QUALITY if k in metrics})
        results[f"sample_quality{q}"] = {
            "num_samples": args.num_samples,
            "seed": args.seed,
            "dataset": dataset,
            "reference": f"the {dataset} test set (10,000 images), shared_utils.sample_quality",
            "floor": {k: _rounded(floor[k]) for k in QUALITY if k in floor},
            "sampling_wall_s": round(sample_wall, 1),
            "threads": args.threads,
            "command": command,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, f"python -m {__package__}.evaluate")
    parser.add_argument(
        "--num-samples",
        type=int,
        default=PROTOCOL_N,
        help="prior samples scored by the sample-quality protocol (10,000); 0: skip",
    )
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
