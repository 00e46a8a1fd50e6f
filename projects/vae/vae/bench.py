"""Benchmark: test NLL reached per CPU-minute, VAE (k=1) against IWAE (k=50).

    python -m vae.bench                       # about 4 CPU-minutes of training plus evaluation
    python -m vae.bench --cpu-minutes 1 2 4   # other budgets

For each objective one run is trained on one thread with a budget measured in CPU time of the
process (not wall time: the course machine's cores are shared, so wall time would measure the
neighbours). The run is stopped at each budget in turn, evaluated, and resumed (``--resume``)
towards the next budget. The evaluation is the IWAE bound with k=100 on the first 1000
fixed-binarized test images (a cheap stand-in for the full k=5000 test NLL, which costs
about 20 CPU-minutes per model). Training throughput is images per CPU-second. A table is printed
and ``benchmarks/results.json`` is written.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from shared_utils.checkpoints import load_checkpoint
from shared_utils.data import fixed_binarized_mnist
from vae.evaluate import evaluate, load_model
from vae.train import parse_args, train

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vae.bench", description=__doc__.split("\n")[0])
    p.add_argument("--cpu-minutes", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--runs", nargs="+", default=["vae:1", "iwae:50"], help="objective:k")
    p.add_argument("--eval-k", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x_eval = fixed_binarized_mnist("test")[: args.eval_n]
    shutil.rmtree(args.out, ignore_errors=True)
    rows = []
    t_start = time.perf_counter()
    for spec in args.runs:
        objective, k = spec.split(":")
        out = args.out / f"{objective}_k{k}"
        for i, minutes in enumerate(sorted(args.cpu_minutes)):
            train_argv = ["--objective", objective, "--k", k, "--cpu-minutes", str(minutes)]
            train_argv += ["--out", str(out), "--save-every", "1000", "--quiet"]
            train_argv += ["--resume"] if i > 0 else []
            path = train(parse_args(train_argv), "python -m vae.train " + " ".join(train_argv))
            ckpt = load_checkpoint(path)
            metrics, batch_size = ckpt.metrics, ckpt.config["batch_size"]
            result = evaluate(load_model(path), x_eval, k=args.eval_k, elbo_k=1, seed=0)
            row = {
                "objective": objective,
                "k": int(k),
                "cpu_minutes": minutes,
                "epochs": metrics["epochs"],
                "steps": metrics["steps"],
                "test_nll": round(result["nll"], 2),
                "test_elbo": round(result["elbo"], 2),
                "images_per_cpu_s": round(
                    metrics["steps"] * batch_size / metrics["train_cpu_s"], 1
                ),
                "train_wall_s": metrics["train_wall_s"],
            }
            rows.append(row)
            print(
                f"{objective:>4} k={k:<3} {minutes:4g} CPU-min  epochs {row['epochs']:>3}  "
                f"NLL {row['test_nll']:7.2f}  ELBO {row['test_elbo']:7.2f}  "
                f"{row['images_per_cpu_s']:8.1f} img/CPU-s  (wall {row['train_wall_s']:.0f} s)",
                flush=True,
            )
    report = {
        "what": "test NLL reached per CPU-minute of training (1 thread), VAE vs IWAE",
        "metric": f"IWAE bound, k={args.eval_k}, first {args.eval_n} fixed-binarized MNIST "
        "test images, nats (lower is better); ELBO with 1 sample",
        "budget_clock": "CPU time of the training process (time.process_time), 1 thread",
        "command": "python -m vae.bench" + ("" if argv is None else " " + " ".join(argv)),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "total_wall_s": round(time.perf_counter() - t_start, 1),
        "rows": rows,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
