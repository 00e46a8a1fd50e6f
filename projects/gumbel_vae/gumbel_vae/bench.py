"""Speed and budget of the categorical VAE on the CPU: training images/s, sampling images/s and
the test NLL reached per CPU-minute of training.

    python -m gumbel_vae.bench                  # writes benchmarks/results.json (about a minute)
    python -m gumbel_vae.bench --threads 2
    DGM_SMOKE=1 python -m gumbel_vae.bench      # tiny: checks that it runs, writes nothing

Origin: written for dgm-course (MIT licence).

**Training**: train.py's step (a fresh binarization of a batch of real training images, minus the
relaxed ELBO, backward, fused Adam) with the default model and batch size, for the Gumbel-softmax
and the straight-through estimator, timed interleaved (``shared_utils.benchmarking.compare``:
medians of the repeats, so that a change of the machine's load hits both alike). **Sampling**:
``Model.sample`` (codes from the uniform prior through the decoder) in batches of 100 and 1,000;
**estimating**: the IWAE-k NLL of 100 test images. **Budget**: the logs of the shipped and
comparison runs (``results/<run>/``) give the end-of-epoch test NLL monitor (IWAE bound, k = 10,
first 1,000 fixed-binarized test images) against the CPU-minutes spent (``eval_curve``) and the
CPU-minutes each run needed to reach a few NLL levels (``time_to_reach``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch

from shared_utils.benchmarking import (
    bench_parser,
    compare,
    eval_curve,
    machine,
    parse_bench_args,
    reached_text,
    time_to_reach,
    write_results,
)
from shared_utils.data import dataset_tensors, evaluation_inputs, model_inputs
from shared_utils.training import adam, count_parameters, is_smoke

from .model import Model
from .train import TrainConfig, model_kwargs, step_temperature

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
LOGS = PROJECT / "results"
NLL_LEVELS = (110.0, 105.0, 100.0, 97.0)


def training_loop(cfg: TrainConfig, batches: list[torch.Tensor], hard: bool):
    """A function running train.py's step once per batch on a fresh model (seed 0)."""
    torch.manual_seed(0)
    model = Model(**model_kwargs(cfg))
    optimizer = adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)

    def loop() -> None:
        for i, batch in enumerate(batches):
            x = model_inputs(cfg.dataset, batch, generator)
            loss = model.loss(x, tau=step_temperature(cfg, i), hard=hard)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return loop, model


def budget_table(folder: Path = LOGS) -> dict[str, Any]:
    """Per run folder under ``folder``: the NLL monitor against CPU-minutes and its milestones."""
    table: dict[str, Any] = {}
    for eval_csv in sorted(folder.glob("*/eval.csv")):
        points = eval_curve(eval_csv.parent, "test_nll_nats")
        if not points:
            continue
        reached = time_to_reach(points, "test_nll_nats", NLL_LEVELS)
        table[eval_csv.parent.name] = {
            "cpu_minutes_to_reach": reached,
            "last": points[-1],
            "best_test_nll_nats": min(p["test_nll_nats"] for p in points),
        }
        print(f"{eval_csv.parent.name}: {reached_text(reached)}")
    return table


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    parser = bench_parser("python -m gumbel_vae.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--steps", type=int, default=3 if smoke else 100, help="steps a repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--eval-k", type=int, default=10 if smoke else 1000)
    args, argv = parse_bench_args(parser, argv)
    cfg = TrainConfig(batch_size=args.batch_size)
    images, _ = dataset_tensors(cfg.dataset, "train")
    bs = args.batch_size
    batches = [images[i * bs : (i + 1) * bs] for i in range(args.steps)]

    loops = {
        name: training_loop(cfg, batches, hard) for name, hard in (("gumbel", False), ("st", True))
    }
    timing = compare({name: loop for name, (loop, _) in loops.items()}, repeats=args.repeats)
    training = {
        name: {**t, "images_per_s": round(args.steps * bs / t["median_s"], 1)}
        for name, t in timing.items()
    }
    model = loops["gumbel"][1].eval()
    generator = torch.Generator().manual_seed(0)
    sample_timing = compare(
        {f"batch_{n}": (lambda n=n: model.sample(n, generator)) for n in (100, 1000)},
        repeats=args.repeats,
    )
    sampling = {
        name: {**t, "images_per_s": round(int(name.split("_")[1]) / t["median_s"], 1)}
        for name, t in sample_timing.items()
    }
    x_test = evaluation_inputs(cfg.dataset, "test")[0][:100]
    torch.manual_seed(0)
    est = compare(
        {f"iwae_k{args.eval_k}": lambda: model.evaluate(x_test, k=args.eval_k)},
        repeats=max(1, args.repeats // 2),
    )
    est = {name: {**t, "images_per_s": round(100 / t["median_s"], 2)} for name, t in est.items()}
    report: dict[str, Any] = {
        "what": "training images/s (train.py's step), sampling images/s (Model.sample), "
        "IWAE-k test-NLL images/s, CPU; interleaved medians",
        "command": shlex.join(["python", "-m", "gumbel_vae.bench", *argv]),
        "machine": machine(),
        "model": model.config(),
        "parameters": count_parameters(model),
        "batch_size": bs,
        "steps_per_repeat": args.steps,
        "training": training,
        "sampling": sampling,
        "estimating": est,
        "budget": {
            "metric": "end-of-epoch test NLL monitor: IWAE bound, k = 10, first 1,000 "
            "fixed-binarized MNIST test images, nats",
            "runs": budget_table(),
        },
    }
    for name, t in training.items():
        print(f"train step ({name}), batch {bs}: {t['images_per_s']:.0f} images/s")
    for name, t in sampling.items():
        print(f"sampling, {name}: {t['images_per_s']:.0f} images/s")
    for name, t in est.items():
        print(f"test NLL estimate ({name}): {t['images_per_s']:.1f} images/s")
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
