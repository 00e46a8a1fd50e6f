"""Draw samples from a checkpoint into a PNG grid (Model.sample).

    python -m __slug__.sample checkpoints/__slug__.safetensors       # 64 samples: runs/samples.png
    python -m __slug__.sample CHECKPOINT --num-samples 100 --out runs/grid.png --seed 1

Origin: written for dgm-course (MIT licence).

Every random number comes from one generator seeded with ``--seed``: the same command draws the
same images (on the same device).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from shared_utils.checkpoints import CheckpointError, load_model, printable
from shared_utils.training import evaluating, pick_device
from shared_utils.viz import save_images

from .model import Model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.sample",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a .safetensors file with its .json sidecar")
    parser.add_argument("--num-samples", type=int, default=64, help="images to draw")
    parser.add_argument("--out", type=Path, default=Path("runs/samples.png"), help="PNG grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    args = parser.parse_args(argv)
    if args.num_samples < 1 or args.threads < 1:
        print("error: --num-samples and --threads must be at least 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    try:
        model = load_model(args.checkpoint, Model, map_location=device)
    except CheckpointError as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with evaluating(model):
        images = model.sample(args.num_samples, generator=generator)
    nrow = math.ceil(math.sqrt(args.num_samples))
    save_images(images.cpu(), args.out, nrow=nrow)
    print(f"wrote {args.out}: {args.num_samples} samples of {args.checkpoint}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
