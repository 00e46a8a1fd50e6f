"""Training throughput of the three GANs: eager vs channels_last vs torch.compile, on the CPU.

    python -m gans.bench                       # writes benchmarks/results.json
    python -m gans.bench --steps 10 --repeats 3 --gans dcgan
    DGM_SMOKE=1 python -m gans.bench           # tiny: checks that it runs, writes nothing

It also reads the shipped runs' FID curves (``results/<gan>_<dataset>/eval.csv``) into the
CPU-minutes each GAN took to reach FID thresholds: FID reached per CPU-minute.

For each GAN, the timed unit is train.py's ``train_step`` with one D update and one G update
(n_critic = 1 for all three, so that the GANs compare per update pair; WGAN-GP's real iteration
has n_critic = 5 D updates), on real training batches with train.py's defaults (width, z_dim,
batch size, the paper's Adam settings), on one thread. The three backends of ``--backend`` are
timed interleaved (``shared_utils.benchmarking.compare``: medians of the repeats, so that a change
of the machine's load hits all of them alike); the first call, which pays for compilation, is
timed apart. torch.compile leaves WGAN-GP's critic eager (double backward; see train.py).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import torch

from gans.train import (
    BACKENDS,
    OBJECTIVES,
    TrainConfig,
    build,
    step_modules,
    to_backend,
    to_model_range,
    train_step,
    with_paper_defaults,
)
from shared_utils.benchmarking import (
    bench_parser,
    compare,
    machine,
    parse_bench_args,
    reached_text,
    time_to_reach,
    write_results,
)
from shared_utils.data import dataset_tensors
from shared_utils.training import adam, count_parameters, is_smoke, read_csv_log

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
FID_THRESHOLDS = (60.0, 40.0, 30.0, 25.0)


def fid_per_cpu_minute(results_dir: Path = PROJECT / "results") -> dict[str, Any]:
    """From the shipped runs' eval.csv (FID of 2,000 samples against CPU time, evaluations
    excluded): the CPU-minutes each GAN needed to first reach each FID threshold, and the last
    FID within its budget. "Which GAN trains fastest on a laptop", on the runs that were shipped."""
    table: dict[str, Any] = {}
    for eval_csv in sorted(results_dir.glob("*/eval.csv")):
        rows = read_csv_log(eval_csv)
        if not rows:
            continue
        reached = time_to_reach(rows, "fid", FID_THRESHOLDS, "train_cpu_minutes")
        table[eval_csv.parent.name] = {
            "train_cpu_minutes_to_reach": reached,
            "last": {k: rows[-1][k] for k in ("step", "fid", "train_cpu_minutes")},
            "best_fid": min(r["fid"] for r in rows),
        }
    return table


def step_loop(cfg: TrainConfig, batches: list[torch.Tensor]):
    """A function that runs ``train_step`` once per batch (one D and one G update each) with
    fresh networks of ``cfg`` (seed 0), and the networks' sizes."""
    torch.manual_seed(0)
    G, D = build(cfg)
    betas = (cfg.beta1, cfg.beta2)
    opt_g, opt_d = adam(G.parameters(), lr=cfg.lr, betas=betas), adam(
        D.parameters(), lr=cfg.lr, betas=betas
    )
    G_step, D_step = step_modules(cfg, G, D)
    objective = OBJECTIVES[cfg.gan]
    options = {"lambda_gp": cfg.lambda_gp} if cfg.gan == "wgan-gp" else {}
    reals = [to_backend(x, cfg) for x in batches]
    generator = torch.Generator().manual_seed(0)

    def loop() -> None:
        for real in reals:
            train_step(G_step, D_step, opt_g, opt_d, [real], objective, generator, **options)

    return loop, {"G": count_parameters(G), "D": count_parameters(D)}


def main(argv: list[str] | None = None) -> int:
    smoke = is_smoke()
    parser = bench_parser("python -m gans.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--gans", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--steps", type=int, default=2 if smoke else 20, help="D+G steps a repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    parser.add_argument("--batch-size", type=int, default=8 if smoke else TrainConfig.batch_size)
    parser.add_argument("--width", type=int, default=8 if smoke else TrainConfig.width)
    args, argv = parse_bench_args(parser, argv)
    images, _ = dataset_tensors("mnist", "train")
    bs = args.batch_size
    batches = [to_model_range(images[i * bs : (i + 1) * bs]) for i in range(args.steps)]
    report: dict[str, Any] = {
        "what": "training images/s of one D update + one G update (train.train_step), CPU, "
        "eager vs channels_last vs torch.compile, interleaved medians",
        "command": shlex.join(["python", "-m", "gans.bench", *argv]),
        "smoke": smoke,
        "machine": machine(),
        "batch_size": bs,
        "width": args.width,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "gans": {},
    }
    for gan in args.gans:
        loops, first, sizes = {}, {}, {}
        for backend in args.backends:
            cfg = with_paper_defaults(
                TrainConfig(gan=gan, backend=backend, n_critic=1, width=args.width)
            )
            loops[backend], sizes = step_loop(cfg, batches)
            start, cpu = time.perf_counter(), time.process_time()
            loops[backend]()  # warm-up: torch.compile compiles here
            first[backend] = {
                "wall_s": round(time.perf_counter() - start, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
        timing = compare(loops, repeats=args.repeats, warmup=0)
        rows = {
            backend: {
                "images_per_s": round(args.steps * bs / t["median_s"], 1),
                "images_per_cpu_s": round(args.steps * bs / t["median_cpu_s"], 1),
                "first_call": first[backend],
                **t,
            }
            for backend, t in timing.items()
        }
        report["gans"][gan] = {"parameters": sizes, "backends": rows}
        shown = ", ".join(f"{b} {r['images_per_s']:.0f}" for b, r in rows.items())
        print(f"{gan}: images/s (batch {bs}, {args.threads} thread(s)): {shown}", flush=True)
    report["fid_per_cpu_minute"] = fid_per_cpu_minute()
    for run, row in report["fid_per_cpu_minute"].items():
        print(
            f"{run}: FID-2k {row['last']['fid']:.1f} after {row['last']['train_cpu_minutes']:.1f} "
            f"CPU-min; {reached_text(row['train_cpu_minutes_to_reach'])}"
        )
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
