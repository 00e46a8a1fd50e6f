"""Test bits/dim of a RealNVP or NICE checkpoint on the 8-bit test images of its dataset.

    python -m realnvp.evaluate checkpoints/realnvp_mnist.safetensors              # all 10,000
    python -m realnvp.evaluate checkpoints/realnvp_mnist.safetensors --eval-n 500  # quick
    python -m realnvp.evaluate checkpoints/realnvp_mnist.safetensors --write      # into the sidecar

The number is the NLL of the discrete 8-bit images in bits/dim, ``-(log p_y(y) + log|dy/dx|) /
(D ln 2) + 8`` with ``y`` the logit transform of ``x = (pixel + u) / 256`` (``preprocess.py``):
each test image is dequantized with one draw of ``u``, fixed by ``--seed``, so it is a
single-sample estimate of the dequantization upper bound ``E_u[-log p(pixel + u)]`` on the
discrete NLL (the quantity RealNVP, Glow and FFJORD report). The dataset is the checkpoint's
(sidecar ``train.dataset``); the noise of image ``i`` does not depend on ``--eval-n``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from typing import Any

from realnvp.model import Flow, dataset_bits_per_dim
from realnvp.preprocess import dequantization_noise
from realnvp.train import DATASETS
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import dataset_tensors
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix


def _evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    model = load_model(args.checkpoint, Flow, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset", "mnist")
    if dataset not in DATASETS:
        raise RunError(
            f"{args.checkpoint}: its sidecar names dataset {dataset!r}, not one of {DATASETS}"
        )
    images, _ = dataset_tensors(dataset, "test")
    total = images.shape[0]
    pixels = images[: args.eval_n]
    n = pixels.shape[0]
    noise = dequantization_noise(n, pixels.shape[1:], args.seed)
    start = time.perf_counter()
    bpd = dataset_bits_per_dim(model, pixels, noise, args.batch_size)
    wall = time.perf_counter() - start
    mean, sem = bpd.mean().item(), (bpd.std().item() / math.sqrt(n) if n > 1 else float("nan"))
    nats = mean * model.num_dims * math.log(2.0)
    print(
        f"test bits/dim: {mean:.4f} (+- {sem:.4f} standard error over images; {n} {dataset} test "
        f"images, one dequantization per image, seed {args.seed})"
    )
    print(f"test NLL: {nats:.2f} nats per image of {model.num_dims} 8-bit pixels; {wall:.0f} s")
    suffix = subset_suffix(n, total)
    return {
        f"test_bpd{suffix}": round(mean, 4),
        f"evaluation{suffix}": {
            "n_test": n,
            "dataset": dataset,
            "estimator": "single-sample uniform-dequantization bound on the discrete NLL",
            "noise_seed": args.seed,
            "standard_error": round(sem, 4),
            "wall_s": round(wall, 1),
            "threads": args.threads,
            "command": "python -m realnvp.evaluate " + shlex.join(argv),
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, "python -m realnvp.evaluate")
    return eval_cli(parser, lambda args: _evaluate_command(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
