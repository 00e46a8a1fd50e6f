"""Draw SGLD samples from a checkpoint into a PNG grid.

    python -m jem.sample checkpoints/jem_fashion-mnist.safetensors   # 64 samples: runs/samples.png
    python -m jem.sample CHECKPOINT --num-samples 100 --sgld-steps 200 --out runs/grid.png --seed 1

Origin: written for dgm-course (MIT licence).

The chains start from uniform noise in [-1, 1] and run ``--sgld-steps`` steps of SGLD on
E(x) = -LogSumExp_y f(x)[y] with JEM's step size 1 and noise 0.01 (sgld.py); no replay buffer is
involved (the buffer belongs to a training run). Every random number comes from one generator
seeded with ``--seed``: the same command draws the same images.
"""

from __future__ import annotations

import argparse

import torch

from shared_utils.runs import sample_cli

from .model import SAMPLE_STEPS, Model


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sgld-steps", type=int, default=SAMPLE_STEPS, help="SGLD steps")


def _draw(model: Model, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    return model.sample(args.num_samples, generator=generator, steps=args.sgld_steps)


def main(argv: list[str] | None = None) -> int:
    return sample_cli(
        __doc__,
        f"python -m {__package__}.sample",
        Model,
        argv,
        draw=_draw,
        add_arguments=_add_arguments,
    )


if __name__ == "__main__":
    raise SystemExit(main())
