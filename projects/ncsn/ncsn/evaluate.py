"""Evaluate a score network: test DSM loss, or the course's sample-quality protocol with its floor.

    python -m ncsn.evaluate checkpoints/ncsn_fashion-mnist.safetensors          # test DSM loss
    python -m ncsn.evaluate CHECKPOINT --sample-quality --num-samples 2000 --T 5 --bf16
    python -m ncsn.evaluate CHECKPOINT ... --write                  # into the sidecar

Origin: written for dgm-course (MIT licence).

**Test DSM loss** (the default): the mean of ``Model.evaluate`` over the first ``--eval-n`` test
images of the checkpoint's dataset: Eq. 6 with lambda(sigma) = sigma^2, image k at level k mod L,
its noise drawn after ``torch.manual_seed(--seed)``.

**--sample-quality**: ``--num-samples`` samples by annealed Langevin dynamics (Algorithm 1 with
``--eps`` and ``--T``, the checkpoint's own unless given; ``--bf16`` runs the network in bfloat16)
scored by ``shared_utils.sample_quality`` against the 10,000 test images: FID, KID, precision,
recall, class coverage, next to the floor **at the same number of samples** (the first
``--num-samples`` training images against the test images; FID and KID depend on the sample
size, so a floor at 10,000 would flatter the model). Costs L x T network evaluations per sample.
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
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix
from shared_utils.training import evaluating

from .model import DATASET, METRIC, METRIC_LABEL, Model, draw

PROTOCOL_N = 10_000


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


def sample_quality():
    """``shared_utils.sample_quality``, imported when first needed (through ``sys.modules``, so
    that tests can substitute it)."""
    import importlib

    return importlib.import_module("shared_utils.sample_quality")


def sampler_name(eps: float, T: int, n: int) -> str:
    """The key of a sample-quality result in the sidecar's metrics."""
    return f"sample_quality_T{T}_eps{eps:g}_n{n}"


def _sample_quality_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, Model, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset", DATASET)
    eps = model.config()["eps"] if args.eps is None else args.eps
    T = model.config()["T"] if args.T is None else args.T
    if args.num_samples < 2 or T < 1 or eps <= 0:
        raise RunError("--num-samples must be at least 2, --T at least 1 and --eps positive")
    start, cpu = time.perf_counter(), time.process_time()
    samples = draw(model, args.num_samples, args.seed, args.chunk, eps=eps, T=T, bf16=args.bf16)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    sq = sample_quality()
    metrics = sq.evaluate(samples, dataset)
    floor = sample_quality().floor(dataset, args.num_samples)
    name = sampler_name(eps, T, args.num_samples)
    L = model.config()["L"]
    print(
        f"{args.num_samples} samples, annealed Langevin L={L} T={T} eps={eps:g}"
        f"{' (bf16)' if args.bf16 else ''}: {L * T} network evaluations per sample, "
        f"{wall:.0f} s wall, {cpu:.0f} CPU-s, {args.num_samples / wall:.1f} images/s"
    )
    print(
        sq.table({name: metrics}, floor).replace(
            "10k training images", f"{args.num_samples} training images"
        )
    )
    return {
        name: {
            **{k: v for k, v in metrics.items()},
            "floor": floor,
            "settings": {"L": L, "T": T, "eps": eps, "bf16": args.bf16, "seed": args.seed},
            "dataset": dataset,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "images_per_s": round(args.num_samples / wall, 2),
            "threads": args.threads,
            "command": f"python -m {__package__}.evaluate " + shlex.join(argv),
        }
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, f"python -m {__package__}.evaluate")
    parser.add_argument(
        "--sample-quality", action="store_true", help="score samples (FID, KID, P/R, coverage)"
    )
    parser.add_argument("--num-samples", type=int, default=PROTOCOL_N, help="samples scored")
    parser.add_argument("--eps", type=float, default=None, help="Langevin epsilon (checkpoint's)")
    parser.add_argument("--T", type=int, default=None, help="steps per level (checkpoint's)")
    parser.add_argument("--bf16", action="store_true", help="network in bfloat16 when sampling")
    parser.add_argument("--chunk", type=int, default=500, help="samples drawn at once")

    def command(args: argparse.Namespace) -> dict[str, Any]:
        if args.sample_quality:
            return _sample_quality_command(args, argv)
        return _evaluate_command(args, argv)

    return eval_cli(parser, command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
