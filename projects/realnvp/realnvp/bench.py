"""Training throughput of RealNVP (eager vs channels_last vs torch.compile) and NICE, on the CPU.

    python -m realnvp.bench                              # writes benchmarks/results.json
    python -m realnvp.bench --runs runs/realnvp_mnist runs/nice_mnist    # + bits/dim per CPU-minute
    DGM_SMOKE=1 python -m realnvp.bench                  # tiny: checks that it runs, writes nothing

The timed unit is train.py's step (dequantize a batch, ``training_loss``, backward pass, gradient
clipping, fused Adam step) on real MNIST training batches with train.py's defaults, on
``--threads`` threads. The three ``--backend`` values of RealNVP and NICE's (eager) step are timed
interleaved (``shared_utils.benchmarking.compare``: medians of the repeats, so that a change of the
machine's load hits all of them alike); the first call, which pays for compilation, is timed apart.

With ``--runs``, each run folder's ``eval.csv`` (test bits/dim at each epoch's end) is joined with
its ``time.csv`` (CPU seconds at the log rows) into bits/dim against CPU-minutes: what a CPU-minute
buys with each model.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realnvp.preprocess import dequantize
from realnvp.train import BACKENDS, TrainConfig, build, step_function, to_backend, training_loss
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
from shared_utils.data import dataset_tensors
from shared_utils.training import adam, count_parameters, is_smoke

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"


def step_loop(cfg: TrainConfig, batches: list[torch.Tensor]):
    """A function that runs train.py's step once per batch with a fresh model of ``cfg`` (seed 0),
    and the model's number of parameters."""
    torch.manual_seed(0)
    model = build(cfg)
    optimizer = adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bits_per_dim = step_function(cfg, model)
    generator = torch.Generator().manual_seed(0)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf

    def loop() -> None:
        for pixels in batches:
            x = to_backend(dequantize(pixels, generator), cfg)
            loss = training_loss(bits_per_dim, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()

    return loop, count_parameters(model)


BPD_THRESHOLDS = (3.0, 2.0, 1.5, 1.3, 1.2)


def bpd_per_cpu_minute(run_dir: Path) -> dict[str, Any]:
    """Test bits/dim at each epoch's end (eval.csv) against the run's CPU-minutes at that step
    (time.csv; evaluations included), and the CPU-minutes to first reach each threshold."""
    curve = eval_curve(run_dir, "test_bpd")
    return {
        "run": str(run_dir),
        "curve": curve,
        "cpu_minutes_to_reach": time_to_reach(curve, "test_bpd", BPD_THRESHOLDS),
    }


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    defaults = TrainConfig()
    parser = bench_parser("python -m realnvp.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--no-nice", action="store_true", help="skip NICE's step")
    parser.add_argument("--steps", type=int, default=2 if smoke else 10, help="steps per repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=8 if smoke else defaults.batch_size)
    parser.add_argument("--channels", type=int, default=4 if smoke else defaults.channels)
    parser.add_argument("--blocks", type=int, default=1 if smoke else defaults.blocks)
    parser.add_argument("--nice-hidden", type=int, default=16 if smoke else defaults.nice_hidden)
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders to read")
    args, argv = parse_bench_args(parser, argv)
    images, _ = dataset_tensors("mnist", "train")
    bs = args.batch_size
    batches = [images[i * bs : (i + 1) * bs] for i in range(args.steps)]
    sizes = {"channels": args.channels, "blocks": args.blocks, "nice_hidden": args.nice_hidden}
    candidates: dict[str, TrainConfig] = {
        f"realnvp_{b}": replace(defaults, model="realnvp", backend=b, **sizes)
        for b in args.backends
    }
    if not args.no_nice:
        candidates["nice_eager"] = replace(defaults, model="nice", backend="eager", **sizes)
    loops, first, params = {}, {}, {}
    for name, cfg in candidates.items():
        loops[name], params[name] = step_loop(cfg, batches)
        start, cpu = time.perf_counter(), time.process_time()
        loops[name]()  # warm-up: torch.compile compiles here
        first[name] = {
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
        }
    timing = compare(loops, repeats=args.repeats, warmup=0)
    rows = {
        name: {
            "parameters": params[name],
            "images_per_s": round(args.steps * bs / t["median_s"], 1),
            "images_per_cpu_s": round(args.steps * bs / max(t["median_cpu_s"], 1e-9), 1),
            "seconds_per_step": round(t["median_s"] / args.steps, 4),
            "first_call": first[name],
            **t,
        }
        for name, t in timing.items()
    }
    for name, row in rows.items():
        print(
            f"{name}: {row['images_per_s']:.0f} images/s, {row['seconds_per_step']:.3f} s/step "
            f"(batch {bs}, {args.threads} thread(s), {row['parameters']:,} parameters)",
            flush=True,
        )
    curves = [bpd_per_cpu_minute(run) for run in args.runs]
    for curve in curves:
        shown = ", ".join(
            f"{r['test_bpd']:.3f} after {r['cpu_minutes']} CPU-min" for r in curve["curve"]
        )
        print(f"{curve['run']}: {shown or 'no eval.csv rows'}")
        print(f"  {reached_text(curve['cpu_minutes_to_reach'])}")
    report = {
        "what": "training images/s of train.py's step (dequantize, loss, backward, clip, fused "
        "Adam), CPU, RealNVP eager vs channels_last vs torch.compile and NICE eager, "
        "interleaved medians",
        "command": shlex.join(["python", "-m", "realnvp.bench", *argv]),
        "smoke": smoke,
        "machine": machine(),
        "batch_size": bs,
        "sizes": sizes,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "steps": rows,
        "bpd_per_cpu_minute": curves,
    }
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
