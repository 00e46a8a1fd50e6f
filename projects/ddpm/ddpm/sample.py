"""Draw samples from a DDPM checkpoint into a PNG grid: DDIM or DDPM's sampler, with or without guidance.

    python -m ddpm.sample checkpoints/ddpm_fashion-mnist.safetensors      # DDIM, 50 steps
    python -m ddpm.sample CHECKPOINT --sampler ddpm --steps 1000 --variance beta_tilde
    python -m ddpm.sample CHECKPOINT --classes 0 1 2 3 4 5 6 7 8 9 --guidance 2 --num-samples 100

Without ``--classes`` the samples are unconditional (the null label); with it, sample i has class
``classes[i % len(classes)]`` and the guided prediction (1 + w) eps(x, c) - w eps(x) of Ho &
Salimans (Eq. 6) with w = ``--guidance`` (0: the conditional model). Every random number, x_T
included, comes from one generator seeded with ``--seed``: the same command draws the same
images (on the same device); these are the images ``ddpm.evaluate`` scores with the same
settings and seed.
"""

from __future__ import annotations

import argparse

import torch

from ddpm.model import DDPM, SAMPLERS, VARIANCES, draw
from shared_utils.runs import sample_cli


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """The sampler's flags, shared by sample.py and evaluate.py."""
    parser.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="DDIM or DDPM's")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (of the T)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM: eta of Song Eq. 16")
    parser.add_argument(
        "--variance",
        choices=VARIANCES,
        default="beta",
        help="DDPM: sigma_t^2 = beta_t or beta_tilde_t (Ho et al. Sec. 3.2)",
    )
    parser.add_argument(
        "--classes", type=int, nargs="+", default=None, help="class labels, cycled (default: none)"
    )
    parser.add_argument(
        "--guidance", type=float, default=0.0, help="w of classifier-free guidance (with --classes)"
    )
    parser.add_argument(
        "--clip-x0", action="store_true", help="clamp the predicted x_0 to [-1, 1] at every step"
    )


def sampler_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`ddpm.model.draw` given by the sampler's flags."""
    if args.guidance != 0.0 and args.classes is None:
        raise ValueError("--guidance needs --classes (guidance steers towards a class)")
    return {
        "sampler": args.sampler,
        "steps": args.steps,
        "eta": args.eta,
        "variance": args.variance,
        "classes": args.classes,
        "w": args.guidance,
        "clip_x0": args.clip_x0,
    }


def _draw(model: DDPM, args: argparse.Namespace, generator: torch.Generator) -> torch.Tensor:
    return draw(model, args.num_samples, args.seed, **sampler_options(args))


def main(argv: list[str] | None = None) -> int:
    return sample_cli(
        __doc__,
        "python -m ddpm.sample",
        DDPM,
        argv,
        draw=_draw,
        add_arguments=add_sampler_arguments,
    )


if __name__ == "__main__":
    raise SystemExit(main())
