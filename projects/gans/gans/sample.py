"""Draw samples from a generator checkpoint into a PNG grid.

    python -m gans.sample checkpoints/dcgan_mnist.safetensors        # 64 samples: runs/samples.png
    python -m gans.sample CHECKPOINT --num-samples 100 --out runs/grid.png --seed 1

Every z comes from one generator seeded with ``--seed``: the same command draws the same images
(on the same device). The generator runs in eval mode (batch norm with its stored statistics).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from gans.networks import Generator, draw
from shared_utils.checkpoints import CheckpointError, load_model, printable
from shared_utils.training import pick_device
from shared_utils.viz import save_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gans.sample",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a .safetensors file with its .json sidecar")
    parser.add_argument("--num-samples", type=int, default=64, help="images to draw")
    parser.add_argument("--out", type=Path, default=Path("runs/samples.png"), help="PNG grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of z")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.num_samples < 1 or args.threads < 1:
        print("error: --num-samples and --threads must be at least 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    try:
        G = load_model(args.checkpoint, Generator, map_location=pick_device(args.device))
    except CheckpointError as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    images = draw(G, args.num_samples, args.seed)
    save_images(images, args.out, nrow=math.ceil(math.sqrt(args.num_samples)))
    print(f"wrote {args.out}: {args.num_samples} samples of {args.checkpoint}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
