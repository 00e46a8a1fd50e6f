"""Glow's training cost on a CPU: backends, the 1x1 convolution's two forms, bits/dim per CPU-minute.

    python -m glow.bench                                  # writes benchmarks/results.json
    python -m glow.bench --parts backends --steps 5 --repeats 3
    python -m glow.bench --parts curve --runs runs/glow_mnist runs/glow_mnist_plain
    DGM_SMOKE=1 python -m glow.bench                      # tiny: checks that it runs, writes nothing

Parts (``--parts``):

* ``backends``: training images/s of train.py's ``train_step`` (forward, backward, Adam) with the
  default model, eager vs channels_last memory vs torch.compile, timed interleaved
  (``shared_utils.benchmarking.compare``: medians of the repeats, so that a change of the
  machine's load hits all of them alike); the first call, which pays for compilation, apart.
* ``permutation``: the same step with the plain 1x1 convolution (log|det W| by an O(C^3) slogdet)
  vs the LU form (Eq. 10: sum(log|s|), O(C)), and the layer alone (forward + backward with its
  log-determinant) at growing channel counts, where the paper's cost argument (Sec. 3.2) shows.
* ``curve``: for each run folder of ``--runs``, the test bits/dim of eval.csv against the CPU time
  the run had spent at that step (time.csv, all threads, the per-epoch evaluations included;
  interpolated between its rows), and the CPU-minutes it took to first reach each threshold:
  bits/dim per CPU-minute, from runs that were trained anyway.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import torch

from glow.layers import InvConv1x1, InvConv1x1LU
from glow.model import dequantize
from glow.train import (
    BACKENDS,
    TrainConfig,
    build,
    loss_function,
    to_backend,
    train_step,
)
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
PARTS = ("backends", "permutation", "curve")
BPD_THRESHOLDS = (2.0, 1.5, 1.4, 1.3, 1.2, 1.1)


def step_loop(cfg: TrainConfig, batches: list[torch.Tensor]):
    """A function that runs ``train_step`` once per batch with a fresh model of ``cfg`` (seed 0,
    ActNorm initialised on the first batch, Adam at ``cfg.lr``), and the model's size."""
    torch.manual_seed(0)
    model = build(cfg)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    xs = [to_backend(x, cfg) for x in batches]
    model.initialize(xs[0])
    loss_fn = loss_function(model, cfg)

    def loop() -> None:
        for x in xs:
            train_step(model, optimizer, loss_fn, x)

    return loop, count_parameters(model)


def time_steps(
    configs: dict[str, TrainConfig], batches: list[torch.Tensor], repeats: int
) -> dict[str, Any]:
    """Training images/s of each config's step loop, interleaved; first calls timed apart."""
    loops, first, sizes = {}, {}, {}
    for name, cfg in configs.items():
        loops[name], sizes[name] = step_loop(cfg, batches)
        start, cpu = time.perf_counter(), time.process_time()
        loops[name]()  # warm-up: torch.compile compiles here
        first[name] = {
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
        }
    timing = compare(loops, repeats=repeats, warmup=0)
    images = sum(x.shape[0] for x in batches)
    return {
        name: {
            "parameters": sizes[name],
            "images_per_s": round(images / t["median_s"], 1),
            "images_per_cpu_s": round(images / t["median_cpu_s"], 1),
            "s_per_step": round(t["median_s"] / len(batches), 4),
            "first_call": first[name],
            **t,
        }
        for name, t in timing.items()
    }


def conv_layer_cost(channels: list[int], batch: int, size: int, calls: int, repeats: int):
    """Forward + backward (of the output's and the log-determinant's sum) of the plain and the LU
    1x1 convolution on ``[batch, C, size, size]``, for each C; milliseconds per call."""

    def calls_of(layer: torch.nn.Module, x: torch.Tensor):
        def loop() -> None:
            for _ in range(calls):
                y, logdet = layer(x)
                (y.sum() + logdet.sum()).backward()

        return loop

    rows = {}
    for c in channels:
        torch.manual_seed(0)
        plain = InvConv1x1(c)
        lu = InvConv1x1LU(c, weight=plain.weight_matrix())
        x = torch.randn(batch, c, size, size)
        candidates = {"plain": calls_of(plain, x), "lu": calls_of(lu, x)}
        timing = compare(candidates, repeats=repeats, warmup=1)
        rows[str(c)] = {
            name: {"ms_per_call": round(1000 * t["median_s"] / calls, 3), **t}
            for name, t in timing.items()
        }
    return rows


def bpd_per_cpu_minute(run_dir: Path) -> dict[str, Any]:
    """The run's test bits/dim (eval.csv) against its CPU-minutes (time.csv), and the CPU-minutes
    at which it first reached each of ``BPD_THRESHOLDS``."""
    points = eval_curve(run_dir, "test_bpd")
    if not points:
        return {}
    return {
        "points": points,
        "cpu_minutes_to_reach": time_to_reach(points, "test_bpd", BPD_THRESHOLDS),
        "best_bpd": min(p["test_bpd"] for p in points),
    }


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    parser = bench_parser("python -m glow.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["eager", "channels_last"] if smoke else list(BACKENDS),
        choices=BACKENDS,
    )
    parser.add_argument("--steps", type=int, default=1 if smoke else 5, help="steps a repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=8 if smoke else TrainConfig.batch_size)
    parser.add_argument("--K", type=int, default=1 if smoke else TrainConfig.steps, dest="k")
    parser.add_argument("--hidden", type=int, default=8 if smoke else TrainConfig.hidden)
    parser.add_argument(
        "--channels", type=int, nargs="+", default=[8] if smoke else [8, 64, 256, 512]
    )
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[PROJECT / "runs" / "glow_mnist"],
        help="run folders for the curve part",
    )
    args, argv = parse_bench_args(parser, argv)
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "glow.bench", *argv]),
        "smoke": smoke,
        "machine": machine(),
        "threads": args.threads,
    }
    bs = args.batch_size
    base = {"steps": args.k, "hidden": args.hidden, "batch_size": bs}
    if {"backends", "permutation"} & set(args.parts):
        images, _ = dataset_tensors("mnist", "train")
        generator = torch.Generator().manual_seed(0)
        batches = [dequantize(images[i * bs : (i + 1) * bs], generator) for i in range(args.steps)]
    if "backends" in args.parts:
        configs = {b: TrainConfig(backend=b, **base) for b in args.backends}
        rows = time_steps(configs, batches, args.repeats)
        report["backends"] = {
            "what": "training images/s of train.train_step (forward, backward, Adam), LU 1x1 "
            "convolution, affine coupling; interleaved medians",
            **base,
            "steps_per_repeat": args.steps,
            "repeats": args.repeats,
            "rows": rows,
        }
        shown = ", ".join(f"{b} {r['images_per_s']:.0f}" for b, r in rows.items())
        print(f"backends: images/s (batch {bs}, {args.threads} thread(s)): {shown}", flush=True)
    if "permutation" in args.parts:
        configs = {p: TrainConfig(permutation=p, **base) for p in ("plain", "lu")}
        rows = time_steps(configs, batches, args.repeats)
        layer = conv_layer_cost(args.channels, batch=16, size=8, calls=10, repeats=args.repeats)
        report["permutation"] = {
            "what": "training images/s with the plain vs the LU 1x1 convolution (eager); and the "
            "layer alone, forward + backward on [16, C, 8, 8], ms per call",
            **base,
            "rows": rows,
            "layer_ms_per_call": layer,
        }
        shown = ", ".join(f"{p} {r['images_per_s']:.0f}" for p, r in rows.items())
        print(f"permutation: training images/s: {shown}", flush=True)
        for c, row in layer.items():
            print(
                f"  1x1 conv, C = {c}: plain {row['plain']['ms_per_call']:.3f} ms, "
                f"LU {row['lu']['ms_per_call']:.3f} ms per forward + backward"
            )
    if "curve" in args.parts:
        report["curve"] = {}
        for run_dir in args.runs:
            curve = bpd_per_cpu_minute(run_dir)
            if not curve:
                print(f"curve: {run_dir} has no eval.csv and time.csv rows yet; skipped")
                continue
            name = run_dir.relative_to(PROJECT) if PROJECT in run_dir.parents else run_dir
            report["curve"][str(name)] = curve
            last = curve["points"][-1]
            reached = reached_text(curve["cpu_minutes_to_reach"])
            print(
                f"curve {run_dir}: {last['test_bpd']:.3f} bits/dim after {last['cpu_minutes']} "
                f"CPU-minutes (step {last['step']}); {reached}"
            )
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
