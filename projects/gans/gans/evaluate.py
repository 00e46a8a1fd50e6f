"""Sample quality of a generator checkpoint: FID, KID, precision/recall, class coverage, and floor.

    python -m gans.evaluate checkpoints/dcgan_mnist.safetensors                  # 10,000 samples
    python -m gans.evaluate checkpoints/dcgan_mnist.safetensors --num-samples 2000   # quicker
    python -m gans.evaluate checkpoints/dcgan_mnist.safetensors --write          # into the sidecar

The course's protocol (``shared_utils.sample_quality``): ``--num-samples`` samples (10,000 by
default) from a generator seeded with ``--seed`` against the 10,000 test images of the dataset the
checkpoint was trained on (its sidecar's ``train.dataset``), in the feature space of that
dataset's classifier; each number is printed next to its floor, the same metric for 10,000
training images. The samples are those that ``python -m shared_utils.sample_quality CHECKPOINT
--model gans.networks:Generator --seed S`` scores. No paper reports FID on MNIST-like data: the
floor is the reference point. With ``--write`` the metrics go into the sidecar (suffixed
``_n<N>`` unless N = 10,000).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from gans.networks import Generator, draw
from gans.train import DATASETS, sample_quality
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.runs import RunError, eval_cli, eval_parser

PROTOCOL_N = 10_000
METRICS = ("fid", "kid", "kid_std", "precision", "recall", "coverage_entropy", "class_histogram")


def evaluate_generator(
    G: Generator, dataset: str, num_samples: int = PROTOCOL_N, seed: int = 0
) -> dict[str, Any]:
    """The protocol's metrics of ``num_samples`` samples of the eval-mode ``G`` (seed ``seed``)."""
    return sample_quality().evaluate(draw(G, num_samples, seed), dataset)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    if args.num_samples < 2:
        raise RunError("--num-samples must be at least 2")
    G = load_model(args.checkpoint, Generator, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset")
    if dataset not in DATASETS:
        raise RunError(
            f"{args.checkpoint}: its sidecar names dataset {dataset!r}, not one of {DATASETS}"
        )
    start = time.perf_counter()
    metrics = evaluate_generator(G, dataset, args.num_samples, args.seed)
    floor = sample_quality().floor(dataset)
    wall = time.perf_counter() - start
    print(
        f"{args.num_samples} samples of {args.checkpoint.name} (seed {args.seed}) against the "
        f"{dataset} test set ({wall:.0f} s):"
    )
    print(sample_quality().table({args.checkpoint.stem: metrics}, floor))
    print("class histogram of the samples:", _rounded(metrics["class_histogram"]))
    suffix = "" if args.num_samples == PROTOCOL_N else f"_n{args.num_samples}"
    return {
        **{f"{k}{suffix}": _rounded(metrics[k]) for k in METRICS if k in metrics},
        f"sample_quality{suffix}": {
            "num_samples": args.num_samples,
            "seed": args.seed,
            "dataset": dataset,
            "reference": f"the {dataset} test set (10,000 images), shared_utils.sample_quality",
            "floor": {k: _rounded(floor[k]) for k in METRICS if k in floor},
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": "python -m gans.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, "python -m gans.evaluate")
    for action in parser._actions:  # the shared flags that a sampler's evaluation does not use
        if action.dest in ("eval_n", "batch_size"):
            action.help = argparse.SUPPRESS
    parser.add_argument(
        "--num-samples", type=int, default=PROTOCOL_N, help="samples scored (protocol: 10,000)"
    )
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
