"""Speed of the DDPM on the CPU: training images/s and sampling images/s, per backend and precision.

    python -m ddpm.bench                        # writes benchmarks/results.json (about a minute)
    python -m ddpm.bench --backends eager channels_last compile --threads 2
    DGM_SMOKE=1 python -m ddpm.bench            # tiny: checks that it runs, writes nothing

**Training**: train.py's ``train_step`` (L_simple of a batch of real training images, backward,
gradient clipping, Adam) with train.py's default network, for each ``--backends`` (eager,
channels_last, torch.compile) and each ``--autocasts`` (fp32, bf16 mixed precision), timed
interleaved (``shared_utils.benchmarking.compare``: medians of the repeats, so that a change of
the machine's load hits all of them alike); the first call, which pays for compilation, is timed
apart. **Sampling**: one denoising step (one network evaluation of a batch, then the DDIM
update) for each precision, and a whole DDIM run of ``--sample-steps`` steps; a sampler with S
steps costs S such steps, so its images/s is the step's images/s divided by S (``per_steps``;
with guidance, twice the network evaluations). It also reads the shipped runs' logs
(``results/ddpm_<dataset>/``) into the FID of their evaluations against CPU-minutes.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from ddpm import samplers
from ddpm.model import DDPM
from ddpm.train import BACKENDS, TrainConfig, build, step_module, train_step
from shared_utils.benchmarking import (
    bench_parser,
    compare,
    eval_curve,
    machine,
    parse_bench_args,
    write_results,
)
from shared_utils.data import dataset_tensors
from shared_utils.distributed import Dist
from shared_utils.training import adam, count_parameters, is_smoke

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
AUTOCASTS = {"fp32": "none", "bf16": "bf16"}
STEP_COUNTS = (10, 20, 50, 100, 1000)


def training_loop(cfg: TrainConfig, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """A function that runs train.py's ``train_step`` once per batch on a fresh model of
    ``cfg`` (seed 0), and the model's parameter count."""
    torch.manual_seed(0)
    model = build(cfg)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    step_model = step_module(cfg, model, Dist())
    generator = torch.Generator().manual_seed(0)

    def loop() -> None:
        for x, y in batches:
            train_step(step_model, model, optimizer, x, y, generator, cfg, Dist(), cfg.lr)

    return loop, count_parameters(model)


def sampling_step(model: DDPM, batch: int, precision: str):
    """One DDIM step (t = 500 -> 480) of ``batch`` images: a network evaluation and the update."""
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 500)
    context = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )

    def step() -> None:
        with torch.no_grad(), context:
            samplers.ddim_step(model.schedule, x, model.eps(x, t), 500, 480, 0.0)

    return step


def fid_curves(results_dir: Path = PROJECT / "results") -> dict[str, Any]:
    """The shipped runs' evaluations (FID of their samples, test L_simple) against CPU-minutes
    (the whole run's, evaluations included: time.csv interpolated at the evaluation's step)."""
    curves = {}
    for eval_csv in sorted(results_dir.glob("ddpm_*/eval.csv")):
        if (eval_csv.parent / "time.csv").is_file():
            curves[eval_csv.parent.name] = eval_curve(eval_csv.parent, "fid")
    return curves


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    parser = bench_parser("python -m ddpm.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument(
        "--backends", nargs="+", default=["eager", "channels_last"], choices=BACKENDS
    )
    parser.add_argument("--autocasts", nargs="+", default=list(AUTOCASTS), choices=list(AUTOCASTS))
    parser.add_argument("--steps", type=int, default=1 if smoke else 2, help="train steps a repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 3, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=8 if smoke else 64, help="train batch")
    parser.add_argument("--sample-batch", type=int, default=8 if smoke else 100)
    parser.add_argument("--sample-steps", type=int, default=2 if smoke else 10)
    args, argv = parse_bench_args(parser, argv)
    small = {"base_channels": 8, "channel_mults": [1, 1, 2], "groups": 4} if smoke else {}
    images, labels = dataset_tensors("fashion-mnist", "train")
    bs = args.batch_size
    batches = [
        (images[i * bs : (i + 1) * bs], labels[i * bs : (i + 1) * bs]) for i in range(args.steps)
    ]
    report: dict[str, Any] = {
        "what": "training and sampling images/s of the default DDPM on the CPU (interleaved "
        "medians); sampling: one DDIM step, and whole DDIM runs",
        "command": shlex.join(["python", "-m", "ddpm.bench", *argv]),
        "smoke": smoke,
        "machine": machine(),
        "model": DDPM(**small).config(),
    }

    loops, first, params = {}, {}, 0
    for backend in args.backends:
        for name in args.autocasts:
            cfg = TrainConfig(backend=backend, autocast=AUTOCASTS[name], batch_size=bs, **small)
            key = f"{backend}+{name}"
            loops[key], params = training_loop(cfg, batches)
            start, cpu = time.perf_counter(), time.process_time()
            loops[key]()  # warm-up: torch.compile compiles here
            first[key] = {
                "wall_s": round(time.perf_counter() - start, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
    timing = compare(loops, repeats=args.repeats, warmup=0)
    n = args.steps * bs
    report["parameters"] = params
    report["training"] = {
        "batch_size": bs,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "candidates": {
            key: {
                "images_per_s": round(n / t["median_s"], 1),
                "images_per_cpu_s": round(n / t["median_cpu_s"], 1),
                "images_per_cpu_minute": round(60 * n / t["median_cpu_s"]),
                "first_call": first[key],
                **t,
            }
            for key, t in timing.items()
        },
    }
    shown = ", ".join(
        f"{k} {r['images_per_s']:.0f} ({r['images_per_cpu_s']:.0f}/CPU-s)"
        for k, r in report["training"]["candidates"].items()
    )
    print(f"training images/s (batch {bs}, {args.threads} thread(s)): {shown}", flush=True)

    torch.manual_seed(0)
    model = DDPM(**small).eval()
    step_fns = {name: sampling_step(model, args.sample_batch, name) for name in args.autocasts}

    def ddim_run(name: str):
        context = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if name == "bf16"
            else contextlib.nullcontext()
        )

        def run() -> None:
            with context:
                model.sample(
                    args.sample_batch, torch.Generator().manual_seed(0), steps=args.sample_steps
                )

        return run

    runs = {f"ddim{args.sample_steps}+{name}": ddim_run(name) for name in args.autocasts}
    sampling_timing = compare({**step_fns, **runs}, repeats=args.repeats, warmup=1)
    report["sampling"] = {"batch": args.sample_batch, "precisions": {}}
    for name in args.autocasts:
        step_t = sampling_timing[name]
        run_t = sampling_timing[f"ddim{args.sample_steps}+{name}"]
        per_step = args.sample_batch / step_t["median_s"]
        report["sampling"]["precisions"][name] = {
            "one_step": {"images_per_s": round(per_step, 1), **step_t},
            f"ddim_{args.sample_steps}_steps": {
                "images_per_s": round(args.sample_batch / run_t["median_s"], 2),
                **run_t,
            },
            "per_steps": {str(s): round(per_step / s, 2) for s in STEP_COUNTS},
        }
        print(
            f"sampling, {name}: {per_step:.0f} image-steps/s; DDIM {args.sample_steps} steps "
            f"{args.sample_batch / run_t['median_s']:.1f} images/s; so "
            + ", ".join(f"{s} steps {per_step / s:.2f}" for s in STEP_COUNTS)
            + " images/s",
            flush=True,
        )
    report["fid_curves"] = fid_curves()
    for run, points in report["fid_curves"].items():
        if points:
            last = points[-1]
            print(f"{run}: FID {last['fid']:.1f} after {last['cpu_minutes']} CPU-minutes")
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
