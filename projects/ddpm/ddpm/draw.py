"""Draw the samples that ``ddpm.evaluate`` scores, on any device, into ``.npz`` files of 8-bit images.

    python -m ddpm.draw runs/drawn --device cuda checkpoints/ddpm_fashion-mnist.safetensors
    python -m ddpm.evaluate checkpoints/ddpm_fashion-mnist.safetensors \
        --samples-from runs/drawn/ddpm_fashion-mnist_*.npz ...    # scores them (on a CPU)

Sampling costs one network evaluation per image and step (two with guidance): on a CPU the
steps sweep's 1000-step points alone take hours, on a GPU seconds. This command draws, for each
checkpoint, every set the README's evaluation commands ask for, with the same sampler options,
seed and chunking as :func:`ddpm.model.draw` (so the same x_T and noise), and records the
wall-clock images/s of each set and the device:

* ``<checkpoint>_main.npz``: ``--num-samples`` DDIM-50 samples, unconditional and
  class-conditional (classes 0..9 in turn, w = 0);
* ``<checkpoint>_guidance.npz``: ``--sweep-n`` DDIM-50 samples, unconditional and guided with
  each w of ``--guidance-scales`` (``evaluate --sweep guidance``);
* ``<checkpoint>_steps.npz``: ``--sweep-n`` samples of DDIM (eta 0) and DDPM (sigma^2 = beta) at
  each of ``--sweep-steps`` (``evaluate --sweep steps``).

Images are stored as 8-bit grey levels (what an image file holds); ``evaluate --samples-from``
scores a stored set in place of drawing it when its settings match.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ddpm.evaluate import SWEEP_SAMPLERS, sample_key
from ddpm.model import DDPM, draw
from ddpm.sample import add_sampler_arguments, sampler_options
from shared_utils.checkpoints import CheckpointError, load_model
from shared_utils.training import pick_device, set_threads


def default_sampler_options() -> dict:
    """The sampler's options at the defaults of its flags (DDIM, 50 steps, eta 0, unconditional):
    those of ``ddpm.evaluate`` and ``ddpm.sample`` run without sampler flags."""
    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser)
    return sampler_options(parser.parse_args([]))


def sample_sets(n_main: int, n_sweep: int, steps: list[int], scales: list[float]):
    """``{group: [(n, options), ...]}``: the sets of samples the evaluation commands score,
    each ``options`` exactly as ``ddpm.evaluate`` passes it to :func:`ddpm.model.draw`."""
    classes = list(range(10))
    main = default_sampler_options()
    base = {k: v for k, v in main.items() if k not in ("classes", "w")}  # sweep_guidance's
    return {
        "main": [(n_main, main), (n_main, {**main, "classes": classes})],
        "guidance": [(n_sweep, base)]
        + [(n_sweep, {**base, "classes": classes, "w": w}) for w in scales],
        "steps": [
            (n_sweep, {**SWEEP_SAMPLERS[name], "steps": s, "clip_x0": False})
            for name in ("ddim", "ddpm")
            for s in steps
        ],
    }


def draw_sets(model: DDPM, sets, seed: int, device: torch.device, path: Path) -> None:
    """Draw every ``(n, options)`` of ``sets`` and write them with their index to ``path``."""
    arrays, index = {}, {}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    for i, (n, options) in enumerate(sets):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        samples = draw(model, n, seed, **options)
        speed = n / (time.perf_counter() - start)
        arrays[f"s{i}"] = (samples.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        index[sample_key(n, seed, options)] = {
            "array": f"s{i}",
            "images_per_s": round(speed, 2),
            "device": where,
        }
        print(f"{path.name}: {n} samples, {options}: {speed:.1f} images/s", flush=True)
    arrays["index"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:  # a kill leaves the last complete file in place
        np.savez_compressed(f, **arrays)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.draw", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder of the .npz files")
    parser.add_argument("checkpoints", type=Path, nargs="+", help="DDPM checkpoints")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    parser.add_argument("--num-samples", type=int, default=10_000, help="the tables' sets")
    parser.add_argument("--sweep-n", type=int, default=2000, help="samples per point of a sweep")
    parser.add_argument("--sweep-steps", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument(
        "--guidance-scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0]
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every set (evaluate's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if min(args.num_samples, args.sweep_n, args.threads) < 1:
        print("error: --num-samples, --sweep-n and --threads must be at least 1", file=sys.stderr)
        return 1
    set_threads(args.threads)
    device = pick_device(args.device)
    sets = sample_sets(args.num_samples, args.sweep_n, args.sweep_steps, args.guidance_scales)
    args.out.mkdir(parents=True, exist_ok=True)
    for checkpoint in args.checkpoints:
        try:
            model = load_model(checkpoint, DDPM, map_location=device)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if max(args.sweep_steps) > model.T or min(args.sweep_steps) < 1:
            print(f"error: --sweep-steps must lie in 1..{model.T}", file=sys.stderr)
            return 1
        for group, items in sets.items():
            draw_sets(model, items, args.seed, device, args.out / f"{checkpoint.stem}_{group}.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
