"""Draw samples from a checkpoint pixel by pixel, save them as a PNG grid and report samples/s.

    python -m pixelcnn.sample checkpoints/gated_cond.safetensors --num-samples 40   # a row a digit
    python -m pixelcnn.sample checkpoints/gated_cond.safetensors --num-samples 16 --label 3
    python -m pixelcnn.sample checkpoints/pixelcnn.safetensors --sampler reference

For a class-conditional model without ``--label`` the labels are 0..9, one grid row per digit.
The default sampler is :func:`pixelcnn.fast_sampling.fast_sample` (cached activations);
``--sampler reference`` runs the network at every pixel (:func:`pixelcnn.autoregressive.sample`)
and draws the same samples, more slowly.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from pixelcnn.autoregressive import sample
from pixelcnn.fast_sampling import fast_sample
from pixelcnn.model import build_model
from shared_utils.checkpoints import CheckpointError, load_model, printable
from shared_utils.runs import RunError
from shared_utils.training import pick_device
from shared_utils.viz import save_images

SAMPLERS = {"fast": fast_sample, "reference": sample}


def labels_for_grid(n: int, n_classes: int, label: int | None) -> tuple[torch.Tensor | None, int]:
    """Labels for ``n`` samples (None for an unconditional model) and the grid's row length:
    one row per class when no label is given."""
    if not n_classes:
        if label is not None:
            raise RunError("--label needs a class-conditional checkpoint (n_classes > 0)")
        return None, 8
    if label is not None:
        if not 0 <= label < n_classes:
            raise RunError(f"--label must be a class 0..{n_classes - 1}, not {label}")
        return torch.full((n,), label, dtype=torch.long), 8
    per_class = math.ceil(n / n_classes)
    return torch.arange(n_classes).repeat_interleave(per_class)[:n], per_class


def draw(args: argparse.Namespace) -> Path:
    """Sample ``args.num_samples`` images from ``args.checkpoint`` into a PNG; return its path."""
    if args.num_samples < 1 or args.threads < 1:
        raise RunError("--num-samples and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model = load_model(args.checkpoint, build_model, map_location=device)
    y, nrow = labels_for_grid(args.num_samples, model.n_classes, args.label)
    y = None if y is None else y.to(device)
    generator = torch.Generator(device).manual_seed(args.seed)
    start = time.perf_counter()
    x = SAMPLERS[args.sampler](model, args.num_samples, y, generator=generator)
    seconds = time.perf_counter() - start
    suffix = "" if args.label is None else f"_label{args.label}"
    out = args.out or Path("runs") / f"samples_{args.checkpoint.stem}{suffix}.png"
    save_images(x.cpu(), out, nrow=nrow)
    print(
        f"{args.num_samples} samples in {seconds:.1f} s = {args.num_samples / seconds:.2f} "
        f"samples/s ({args.sampler} sampler, batch of {args.num_samples}, 784 sequential steps, "
        f"{torch.get_num_threads()} thread(s)); wrote {out}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pixelcnn.sample",
        description=__doc__.split("\n")[0],
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a .safetensors file with its .json sidecar")
    p.add_argument("--num-samples", type=int, default=64, help="images drawn (one batch)")
    p.add_argument("--label", type=int, default=None, help="class of a conditional model")
    p.add_argument("--seed", type=int, default=0, help="seed of the Bernoulli draws")
    p.add_argument("--out", type=Path, default=None, help="PNG (default runs/samples_<name>.png)")
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default="fast", help="see above")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    args = p.parse_args(argv)
    try:
        draw(args)
    except (RunError, CheckpointError) as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
