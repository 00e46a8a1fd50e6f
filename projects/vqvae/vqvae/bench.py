"""Speed of VQ-VAE on the CPU: training images/s of both stages, sampling images/s, quality/CPU-min.

    python -m vqvae.bench                  # writes benchmarks/results.json (about a minute)
    python -m vqvae.bench --threads 2
    DGM_SMOKE=1 python -m vqvae.bench      # tiny: checks that it runs, writes nothing

Origin: written for dgm-course (MIT licence).

**Training**: the step of train.py's stage 1 (Eq. 3 on a batch of real training images, backward,
Adam) and of stage 2 (the prior's NLL of a batch of code grids, backward, Adam), with train.py's
default model and batch size, timed interleaved (``shared_utils.benchmarking.compare``: medians
of the repeats). **Sampling**: ``--sample-n`` images in one batch, split into its two parts:
ancestral sampling of the 49 codes from the prior (49 sequential steps with cached keys and
values) and decoding the code grids; the prior's part dominates. **Quality per CPU-minute**: the
shipped runs' evaluations (``results/<run>/eval.csv`` and ``time.csv``, copied from the run
folders) against the CPU-minutes spent when they were made.
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
    time_to_reach,
    write_results,
)
from shared_utils.data import dataset_tensors, model_inputs
from shared_utils.training import adam, count_parameters, is_smoke

from .model import TEST_CONFIG, Model
from .train import TrainConfig, model_kwargs

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
CURVES = {  # run folder under results/ -> (metric of eval.csv, thresholds)
    "vqvae_mnist": ("test_mse", (0.008, 0.005, 0.004)),
    "vqvae_fashion-mnist": ("test_mse", (0.015, 0.01, 0.008)),
    "prior_mnist": ("test_bits_per_dim", (1.8, 1.6, 1.5)),
    "prior_fashion-mnist": ("test_bits_per_dim", (3.5, 3.2, 3.0)),
}


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    parser = bench_parser(f"python -m {__package__}.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--steps", type=int, default=2 if smoke else 10, help="steps per repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    parser.add_argument("--sample-n", type=int, default=20 if smoke else 1000, help="images")
    args, argv = parse_bench_args(parser, argv)
    cfg = TrainConfig(**(TEST_CONFIG if smoke else {}))
    torch.manual_seed(0)
    model = Model(**model_kwargs(cfg))
    images, _ = dataset_tensors(cfg.dataset, "train")
    bs = cfg.batch_size
    batches = [model_inputs(cfg.dataset, images[i * bs : (i + 1) * bs]) for i in range(args.steps)]
    grids = [model.encode(x) for x in batches]
    vq_opt = adam(model.vqvae_parameters(), lr=cfg.lr)
    prior_opt = adam(model.prior.parameters(), lr=cfg.lr)

    def stage1() -> None:
        for x in batches:
            loss = model.loss(x)
            vq_opt.zero_grad(set_to_none=True)
            loss.backward()
            vq_opt.step()

    def stage2() -> None:
        for z in grids:
            loss = model.prior_loss(z)
            prior_opt.zero_grad(set_to_none=True)
            loss.backward()
            prior_opt.step()

    train = compare({"stage1_vqvae": stage1, "stage2_prior": stage2}, repeats=args.repeats)
    model.eval()
    codes: dict[str, torch.Tensor] = {}

    def sample_codes() -> None:
        codes["z"] = model.prior.sample(args.sample_n, torch.Generator().manual_seed(0))

    def decode() -> None:
        model.decode(codes["z"])

    sample_codes()
    sampling = compare({"prior_codes": sample_codes, "decode": decode}, repeats=args.repeats)
    seconds = {k: v["median_s"] for k, v in sampling.items()}
    total = seconds["prior_codes"] + seconds["decode"]
    report: dict[str, Any] = {
        "what": "CPU: train.py's stage-1 and stage-2 steps; prior sampling and decoding",
        "command": shlex.join(["python", "-m", f"{__package__}.bench", *argv]),
        "machine": machine(),
        "model": model.config(),
        "parameters": {
            "encoder+codebook+decoder": count_parameters(model) - count_parameters(model.prior),
            "prior": count_parameters(model.prior),
        },
        "batch_size": bs,
        "training": {
            name: {**timing, "images_per_s": round(bs * args.steps / timing["median_s"], 1)}
            for name, timing in train.items()
        },
        "sampling": {
            "n": args.sample_n,
            **sampling,
            "images_per_s": round(args.sample_n / total, 1),
            "prior_share": round(seconds["prior_codes"] / total, 3),
        },
        "quality_per_cpu_minute": {},
    }
    for run, (metric, thresholds) in CURVES.items():
        folder = PROJECT / "results" / run
        if (folder / "eval.csv").exists():
            curve = eval_curve(folder, metric)
            report["quality_per_cpu_minute"][run] = {
                "curve": curve,
                "reached": time_to_reach(curve, metric, thresholds),
            }
    for name, t in report["training"].items():
        print(f"train {name}, batch {bs}: {t['images_per_s']:.0f} images/s")
    s = report["sampling"]
    print(
        f"sampling {args.sample_n} images: {s['images_per_s']:.0f} images/s "
        f"(prior {seconds['prior_codes']:.2f} s = {100 * s['prior_share']:.0f}%, "
        f"decoder {seconds['decode']:.2f} s)"
    )
    for run, q in report["quality_per_cpu_minute"].items():
        print(f"{run}: " + ", ".join(f"{k} {v}" for k, v in q["reached"].items()))
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
