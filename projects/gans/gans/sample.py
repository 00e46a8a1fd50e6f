"""Draw samples from a generator checkpoint into a PNG grid.

    python -m gans.sample checkpoints/dcgan_mnist.safetensors        # 64 samples: runs/samples.png
    python -m gans.sample CHECKPOINT --num-samples 100 --out runs/grid.png --seed 1

Every z comes from one generator seeded with ``--seed``: the same command draws the same images
(on the same device). The generator runs in eval mode (batch norm with its stored statistics).
"""

from __future__ import annotations

import argparse

import torch

from gans.networks import Generator, draw
from shared_utils.runs import sample_cli


def _draw(G: Generator, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    """The samples ``gans.evaluate`` scores for this seed: ``draw`` seeds its own CPU generator."""
    return draw(G, args.num_samples, args.seed)


def main(argv: list[str] | None = None) -> int:
    return sample_cli(__doc__, "python -m gans.sample", Generator, argv, draw=_draw)


if __name__ == "__main__":
    raise SystemExit(main())
