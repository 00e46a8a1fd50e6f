"""Draw samples from a checkpoint pixel by pixel, save them as a PNG grid and report samples/s.

    python -m pixelcnn.sample checkpoints/gated_cond.safetensors --n 64             # 1 row per digit
    python -m pixelcnn.sample checkpoints/gated_cond.safetensors --n 64 --label 3

For a class-conditional model without ``--label`` the labels are 0..9, one grid row per digit.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from pixelcnn.autoregressive import sample
from pixelcnn.evaluate import load_model
from shared_utils.viz import save_images


def labels_for_grid(n: int, label: int | None) -> tuple[torch.Tensor, int]:
    """Labels for ``n`` samples and the grid width: one row per digit when no label is given."""
    if label is not None:
        if not 0 <= label <= 9:
            raise SystemExit(f"error: --label must be a digit 0..9, got {label}")
        return torch.full((n,), label, dtype=torch.long), 8
    per_digit = math.ceil(n / 10)
    return torch.arange(10).repeat_interleave(per_digit)[:n], per_digit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pixelcnn.sample", description=__doc__.split("\n")[0]
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--label", type=int, default=None, help="digit for a conditional model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default runs/samples_*.png)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, config = load_model(args.checkpoint)
    y, nrow = None, 8
    if config.get("conditional"):
        y, nrow = labels_for_grid(args.n, args.label)
    elif args.label is not None:
        raise SystemExit("error: --label needs a class-conditional checkpoint (--conditional)")
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    x = sample(model, args.n, y, generator=gen)
    seconds = time.perf_counter() - start
    suffix = "" if args.label is None else f"_label{args.label}"
    out = args.out or Path("runs") / f"samples_{args.checkpoint.stem}{suffix}.png"
    save_images(x, out, nrow=nrow)
    print(
        f"{args.n} samples in {seconds:.1f} s = {args.n / seconds:.2f} samples/s "
        f"(batch of {args.n}, 784 sequential steps, {torch.get_num_threads()} thread(s)); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
