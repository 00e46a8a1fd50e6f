"""Draw samples from a Glow checkpoint into a PNG grid, at a temperature.

    python -m glow.sample checkpoints/glow_mnist.safetensors             # 64 samples, T = 1
    python -m glow.sample CHECKPOINT --temperature 0.7 --num-samples 100 --out runs/t07.png

Every latent is drawn from N(0, T^2 I) with T = ``--temperature`` (Sec. 5, Fig. 8: lower
temperatures trade diversity for cleaner images; the paper's samples use T = 0.7, T = 1 is the
model's distribution) and decoded through the inverse flow. All random numbers come from one
generator seeded with ``--seed``: the same command draws the same images (on the same device).
"""

from __future__ import annotations

import argparse
import math

import torch

from glow.model import Glow
from shared_utils.runs import sample_cli


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="T: latents ~ N(0, T^2 I) (paper: 0.7)"
    )


def _draw(model: Glow, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    if not (args.temperature >= 0 and math.isfinite(args.temperature)):
        raise ValueError("--temperature must be a number >= 0")
    return model.sample(args.num_samples, args.temperature, generator)


def main(argv: list[str] | None = None) -> int:
    return sample_cli(
        __doc__, "python -m glow.sample", Glow, argv, draw=_draw, add_arguments=_add_arguments
    )


if __name__ == "__main__":
    raise SystemExit(main())
