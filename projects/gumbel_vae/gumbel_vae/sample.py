"""Draw samples from a checkpoint into a PNG grid (Model.sample).

    python -m gumbel_vae.sample checkpoints/gumbel_vae.safetensors       # 64 samples: runs/samples.png
    python -m gumbel_vae.sample CHECKPOINT --num-samples 100 --out runs/grid.png --seed 1

Origin: written for dgm-course (MIT licence).

Every random number comes from one generator seeded with ``--seed``: the same command draws the
same images (on the same device). The command is the run kit's (``shared_utils.runs.sample_cli``);
a project whose sampler has options (a temperature, a class label) passes them with
``add_arguments`` and ``draw``.
"""

from __future__ import annotations

from shared_utils.runs import sample_cli

from .model import Model


def main(argv: list[str] | None = None) -> int:
    return sample_cli(__doc__, f"python -m {__package__}.sample", Model, argv)


if __name__ == "__main__":
    raise SystemExit(main())
