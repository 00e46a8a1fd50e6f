"""Draw samples from a RealNVP or NICE checkpoint into a PNG grid, at a temperature.

    python -m realnvp.sample checkpoints/realnvp_mnist.safetensors        # 64 samples, T = 1
    python -m realnvp.sample CHECKPOINT --num-samples 100 --temperature 0.7 --out runs/t07.png

A sample is ``x = f^{-1}(z)`` with ``z ~ N(0, T^2 I)`` (every latent of every scale), mapped from
logit space back to ``[0, 1]``. A temperature ``T < 1`` draws from a sharper distribution than
the model's ("reduced temperature", as in Glow, Kingma & Dhariwal 2018; RealNVP samples at
``T = 1``). Every random number comes from one generator seeded with ``--seed``: the same command
draws the same images (on the same device).
"""

from __future__ import annotations

import argparse

import torch

from realnvp.model import Flow
from shared_utils.runs import sample_cli


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temperature", type=float, default=1.0, help="z ~ N(0, T^2 I)")


def _draw(model: Flow, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, not {args.temperature}")
    return model.sample(args.num_samples, args.temperature, generator)


def main(argv: list[str] | None = None) -> int:
    return sample_cli(
        __doc__, "python -m realnvp.sample", Flow, argv, draw=_draw, add_arguments=_add_arguments
    )


if __name__ == "__main__":
    raise SystemExit(main())
