"""Draw samples from a checkpoint by annealed Langevin dynamics into a PNG grid.

    python -m ncsn.sample checkpoints/ncsn_fashion-mnist.safetensors      # 64 samples
    python -m ncsn.sample CHECKPOINT --num-samples 100 --T 5 --eps 1e-4 --out runs/grid.png

Origin: written for dgm-course (MIT licence).

Algorithm 1 with the checkpoint's eps and T unless ``--eps`` / ``--T`` are given (L x T network
evaluations per image); ``--bf16`` runs the network in bfloat16. Every random number comes from
one generator seeded with ``--seed``: the same command draws the same images (on the same
device).
"""

from __future__ import annotations

import argparse

import torch

from shared_utils.runs import sample_cli

from .model import Model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eps", type=float, default=None, help="Langevin epsilon (checkpoint's)")
    parser.add_argument("--T", type=int, default=None, help="steps per level (checkpoint's)")
    parser.add_argument("--bf16", action="store_true", help="network in bfloat16")


def draw(model: Model, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    if (args.T is not None and args.T < 1) or (args.eps is not None and args.eps <= 0):
        raise ValueError("--T must be at least 1 and --eps positive")
    return model.sample(args.num_samples, generator, eps=args.eps, T=args.T, bf16=args.bf16)


def main(argv: list[str] | None = None) -> int:
    return sample_cli(
        __doc__,
        f"python -m {__package__}.sample",
        Model,
        argv,
        draw=draw,
        add_arguments=add_arguments,
    )


if __name__ == "__main__":
    raise SystemExit(main())
