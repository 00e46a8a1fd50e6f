"""Draw samples from a checkpoint into a PNG grid (Model.sample).

    python -m vqvae.sample checkpoints/vqvae_mnist.safetensors   # 64: runs/samples.png
    python -m vqvae.sample CHECKPOINT --num-samples 100 --out runs/grid.png --seed 1

Origin: written for dgm-course (MIT licence).

``Model.sample``: a 7x7 grid of codes drawn from the prior by ancestral sampling, then decoded
(the image is the decoder's location). Use a stage-2 checkpoint (the shipped ones are): a stage-1
checkpoint's prior is untrained. Every random number comes from one generator seeded with
``--seed``: the same command draws the same images (on the same device). The command is the run
kit's (``shared_utils.runs.sample_cli``).
"""

from __future__ import annotations

from shared_utils.runs import sample_cli

from .model import Model


def main(argv: list[str] | None = None) -> int:
    return sample_cli(__doc__, f"python -m {__package__}.sample", Model, argv)


if __name__ == "__main__":
    raise SystemExit(main())
