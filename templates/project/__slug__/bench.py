"""Speed benchmark: training steps per second of model.py's Model (run by `make bench`).

    python -m __slug__.bench                  # print the timing
    python -m __slug__.bench --write          # also write benchmarks/results.json

Origin: written for dgm-course (MIT licence).

Times the training step of train.py (model inputs, ``model.loss``, backward pass, fused Adam
step) on real training batches, with train.py's defaults (model, batch size, learning rate,
dataset), on one CPU thread unless told otherwise. ``shared_utils.benchmarking.compare`` reports
the median of the repeats after a warm-up; add candidates there to compare variants of a step.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from shared_utils.benchmarking import compare, machine, write_results
from shared_utils.data import dataset_tensors, model_inputs
from shared_utils.training import adam

from .model import Model
from .train import TrainConfig, model_kwargs

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"


def main(argv: list[str] | None = None) -> int:
    cfg = TrainConfig()
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=50, help="training steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--batch-size", type=int, default=cfg.batch_size)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where --write writes")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = dataset_tensors(cfg.dataset, "train")
    bs, per_epoch = args.batch_size, images.shape[0] // args.batch_size
    starts = [(i % per_epoch) * bs for i in range(args.steps)]
    batches = [(images[s : s + bs], labels[s : s + bs]) for s in starts]
    model = Model(**model_kwargs(cfg))
    optimizer = adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)

    def train_steps() -> None:
        for batch, y in batches:
            loss = model.loss(model_inputs(cfg.dataset, batch, generator), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    timing = compare({"train_step": train_steps}, repeats=args.repeats)["train_step"]
    seconds = timing["median_s"] / args.steps
    report = {
        "what": "training step of train.py (model inputs, loss, backward, fused Adam), CPU",
        "command": shlex.join(["python", "-m", f"{__package__}.bench", *argv]),
        "machine": machine(),
        "model": model.config(),
        "dataset": cfg.dataset,
        "batch_size": args.batch_size,
        "steps_per_repeat": args.steps,
        "timing": timing,
        "steps_per_s": round(1 / seconds, 2),
        "images_per_s": round(args.batch_size / seconds, 1),
    }
    print(
        f"train step, batch {args.batch_size}, {args.threads} thread(s): "
        f"{report['steps_per_s']:.1f} steps/s ({1000 * seconds:.2f} ms), "
        f"{report['images_per_s']:.0f} images/s"
    )
    if args.write:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
