"""Speed benchmark: training images/s, Langevin steps/s and sampling images/s (``make bench``).

    python -m ncsn.bench                  # print the timings, write benchmarks/results.json
    DGM_SMOKE=1 python -m ncsn.bench      # a tiny run, nothing written

Origin: written for dgm-course (MIT licence).

On one CPU thread unless told otherwise, with train.py's default model, in float32 and under a
bfloat16 autocast (``--autocast bf16`` / ``--bf16``), interleaved by
``shared_utils.benchmarking.compare`` (medians of the repeats, after a warm-up):

* the training step of train.py (Eq. 6 on a batch of ``--batch-size`` real images, backward,
  fused Adam): images/s;
* one step of annealed Langevin dynamics (Algorithm 1, line 6: one network evaluation and the
  update) on ``--langevin-batch`` images: steps/s and image-evaluations/s;
* annealed Langevin sampling of ``--sample-n`` images with L = 10 levels and ``--sample-T`` steps
  each, from the uniform start to the clamped image: images/s (the cost is L x T evaluations
  per image, so images/s falls as 1/T).

**Quality per CPU-minute** (read from the shipped files, nothing retrained): the test DSM loss
of every end-of-epoch evaluation of the shipped runs (``results/<run>/eval.csv``) against the
CPU-minutes spent (``time.csv``), and each sample-quality evaluation (FID at a sampler setting)
of the checkpoints kept at several budgets (``checkpoints/<run>.json`` and the earlier
``results/<run>_<N>min.json`` sidecars) against their training CPU-minutes.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path

import torch

from shared_utils.benchmarking import (
    bench_parser,
    compare,
    eval_curve,
    machine,
    parse_bench_args,
    sidecar_curve,
    write_results,
)
from shared_utils.data import dataset_tensors, model_inputs
from shared_utils.training import adam, count_parameters, is_smoke

from .model import Model
from .score import step_sizes
from .train import TrainConfig, model_kwargs

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
RUNS = ("ncsn_fashion-mnist", "ncsn_mnist")


def quality_per_cpu_minute() -> dict[str, dict]:
    """Per shipped run: the test DSM loss curve against CPU-minutes, and per sampler setting
    the FID of the checkpoints kept at several budgets against their CPU-minutes."""
    report: dict[str, dict] = {}
    for run in RUNS:
        sidecars = sorted((PROJECT / "results").glob(f"{run}_*min.json"))
        sidecars += [p for p in [PROJECT / "checkpoints" / f"{run}.json"] if p.is_file()]
        if not sidecars:
            continue
        entry: dict[str, dict] = {}
        if (PROJECT / "results" / run / "eval.csv").is_file():
            entry["test_dsm_loss"] = eval_curve(PROJECT / "results" / run, "test_dsm_loss")
        samplers = sorted(
            {
                k
                for p in sidecars
                for k in json.loads(p.read_text())["metrics"]
                if k.startswith("sample_quality_")
            }
        )
        for name in samplers:
            entry[name] = sidecar_curve(sidecars, f"{name}/fid", {"floor_fid": f"{name}/floor/fid"})
        report[run] = entry
    return report


def _autocast(bf16: bool):
    return torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    cfg = TrainConfig()
    parser = bench_parser(f"python -m {__package__}.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--steps", type=int, default=2 if smoke else 10, help="train steps/repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 3, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=cfg.batch_size)
    parser.add_argument("--langevin-batch", type=int, default=20 if smoke else 500)
    parser.add_argument("--sample-n", type=int, default=4 if smoke else 50)
    parser.add_argument("--sample-T", type=int, default=1 if smoke else 5)
    args, argv = parse_bench_args(parser, argv)
    torch.manual_seed(0)
    images, _ = dataset_tensors(cfg.dataset, "train")
    bs = args.batch_size
    batches = [model_inputs(cfg.dataset, images[k * bs : (k + 1) * bs]) for k in range(args.steps)]
    model = Model(**model_kwargs(cfg))
    optimizer = adam(model.parameters(), lr=cfg.lr)

    def train_loop(bf16: bool):
        def loop() -> None:
            for x in batches:
                with _autocast(bf16):
                    loss = model.loss(x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return loop

    alpha = step_sizes(model.sigmas, model.config()["eps"])[0].item()
    x = torch.rand(args.langevin_batch, 1, 28, 28)
    level = torch.zeros(args.langevin_batch, dtype=torch.long)

    def langevin_step(bf16: bool):
        @torch.no_grad()
        def step() -> None:
            with _autocast(bf16):  # Algorithm 1, line 6
                x.add_(0.5 * alpha * model.score(x, level) + alpha**0.5 * torch.randn_like(x))
                x.clamp_(-1.0, 2.0)  # keep the benchmark's images in range

        return step

    def sampling(bf16: bool):
        def run() -> None:
            model.sample(
                args.sample_n, torch.Generator().manual_seed(0), T=args.sample_T, bf16=bf16
            )

        return run

    train_timing = compare(
        {"fp32": train_loop(False), "bf16": train_loop(True)}, repeats=args.repeats
    )
    model.eval()
    step_timing = compare(
        {"fp32": langevin_step(False), "bf16": langevin_step(True)}, repeats=args.repeats
    )
    sample_timing = compare(
        {"fp32": sampling(False), "bf16": sampling(True)}, repeats=args.repeats, warmup=0
    )
    L = model.L
    report = {
        "what": "ncsn: training step, one annealed Langevin step, annealed Langevin sampling; CPU",
        "command": shlex.join(["python", "-m", f"{__package__}.bench", *argv]),
        "machine": machine(),
        "model": model.config(),
        "parameters": count_parameters(model),
        "train": {
            "batch_size": bs,
            "steps_per_repeat": args.steps,
            "timing": train_timing,
            "images_per_s": {
                k: round(bs * args.steps / v["median_s"], 1) for k, v in train_timing.items()
            },
        },
        "langevin_step": {
            "batch": args.langevin_batch,
            "timing": step_timing,
            "steps_per_s": {k: round(1 / v["median_s"], 2) for k, v in step_timing.items()},
            "image_evaluations_per_s": {
                k: round(args.langevin_batch / v["median_s"], 1) for k, v in step_timing.items()
            },
        },
        "sampling": {
            "n": args.sample_n,
            "L": L,
            "T": args.sample_T,
            "evaluations_per_image": L * args.sample_T,
            "timing": sample_timing,
            "images_per_s": {
                k: round(args.sample_n / v["median_s"], 2) for k, v in sample_timing.items()
            },
        },
        "quality_per_cpu_minute": quality_per_cpu_minute(),
    }
    for name in ("fp32", "bf16"):
        print(
            f"{name}: train {report['train']['images_per_s'][name]:.0f} images/s (batch {bs}); "
            f"Langevin step {report['langevin_step']['steps_per_s'][name]:.2f} steps/s on "
            f"{args.langevin_batch} images ({report['langevin_step']['image_evaluations_per_s'][name]:.0f}"
            f" image-evaluations/s); sampling L={L} T={args.sample_T}: "
            f"{report['sampling']['images_per_s'][name]:.2f} images/s"
        )
    for run, curves in report["quality_per_cpu_minute"].items():
        for name, points in curves.items():
            key = "test_dsm_loss" if name == "test_dsm_loss" else "fid"
            print(
                f"{run} {name}: "
                + ", ".join(f"{p[key]:.2f} at {p['cpu_minutes']:.1f} CPU-min" for p in points)
            )
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
