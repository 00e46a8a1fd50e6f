"""Benchmark: test NLL reached per CPU-minute (VAE vs IWAE), and two speed comparisons.

    python -m vae.bench                       # about 6 minutes
    python -m vae.bench --cpu-minutes 1 2 4   # other budgets
    python -m vae.bench --skip-budgets        # only the speed comparisons (about 1 minute)

1. For each objective one run is trained on one thread with a budget measured in CPU time of the
   process (the machine's cores are shared, so wall time would measure the neighbours). The run
   is stopped at each budget in turn, evaluated, and resumed towards the next budget. The
   evaluation is the IWAE bound with k=100 on the first 1000 fixed-binarized test images (a cheap
   stand-in for the full k=5000 test NLL).
2. Training steps with ``torch.optim.Adam`` against the fused Adam of ``shared_utils.training.adam``
   (same initial weights and batches; the largest parameter difference after the steps is
   reported), timed interleaved.
3. The IWAE-k estimator drawing 500 against 50 samples at a time (``chunk``), timed interleaved.

A table is printed and ``benchmarks/results.json`` is written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from shared_utils.benchmarking import compare, machine, write_results
from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.training import adam
from vae.evaluate import evaluate
from vae.model import VAE
from vae.objectives import estimate_log_likelihood, training_loss
from vae.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"


def nll_per_budget(runs: list[str], budgets: list[float], out: Path, x_eval, eval_k: int) -> list:
    """Train each ``objective:k`` to each CPU-minute budget in turn (resuming), evaluate each."""
    rows = []
    for spec in runs:
        objective, k = spec.split(":")
        folder = out / f"{objective}_k{k}"
        for i, minutes in enumerate(sorted(budgets)):
            cfg = TrainConfig(
                objective=objective,
                k=int(k),
                cpu_minutes=minutes,
                out=folder,
                resume=i > 0,
                save_every=1000,
                quiet=True,
            )
            path = train(cfg)
            metrics = load_checkpoint(path).metrics
            result = evaluate(load_model(path, VAE), x_eval, k=eval_k, elbo_k=1, seed=0)
            row = {
                "objective": objective,
                "k": int(k),
                "cpu_minutes": minutes,
                "epochs": metrics["epochs"],
                "steps": metrics["steps"],
                "test_nll": round(result["nll"], 2),
                "test_elbo": round(result["elbo"], 2),
                "images_per_cpu_s": round(
                    metrics["steps"] * cfg.batch_size / metrics["train_cpu_s"], 1
                ),
                "train_wall_s": metrics["train_wall_s"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def fused_adam(steps: int = 200, repeats: int = 5) -> dict:
    """Training-step time of Adam vs fused Adam for the VAE (k=1) and the IWAE (k=50)."""
    images, _ = mnist_tensors("train")
    gen = torch.Generator().manual_seed(0)
    batches = [
        binarize(images[i * 100 : (i + 1) * 100].reshape(100, -1), gen) for i in range(steps)
    ]
    report = {}
    for objective, k in (("vae", 1), ("iwae", 50)):
        models: dict[bool, VAE] = {}

        def loop(fused: bool, k=k, objective=objective, models=models) -> None:
            torch.manual_seed(0)
            model = VAE()
            params = model.parameters()
            opt = (
                adam(params, lr=1e-3, eps=1e-4)
                if fused
                else torch.optim.Adam(params, 1e-3, eps=1e-4)
            )
            for x in batches[: steps if k == 1 else steps // 10]:
                loss = training_loss(model, x, objective, k)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            models[fused] = model

        timing = compare({"adam": lambda: loop(False), "fused_adam": lambda: loop(True)}, repeats)
        diff = max(
            (a - b).abs().max().item()
            for a, b in zip(models[False].parameters(), models[True].parameters(), strict=True)
        )
        n_steps = steps if k == 1 else steps // 10
        report[f"{objective}_k{k}"] = {
            "steps": n_steps,
            "timing": timing,
            "images_per_s": {
                name: round(n_steps * 100 / t["median_s"], 1) for name, t in timing.items()
            },
            "max_abs_parameter_difference": diff,
        }
        print(json.dumps({f"{objective}_k{k}": report[f"{objective}_k{k}"]}), flush=True)
    return report


def iwae_chunk(x_eval: torch.Tensor, k: int = 1000, repeats: int = 3) -> dict:
    """IWAE-k estimate of 200 test images drawing 500 vs 50 samples at a time."""
    torch.manual_seed(0)
    model = VAE().eval()
    x = x_eval[:200].reshape(200, -1)
    values = {}

    def estimate(chunk: int) -> None:
        torch.manual_seed(0)
        ll = [estimate_log_likelihood(model, x[i : i + 100], k=k, chunk=chunk) for i in (0, 100)]
        values[chunk] = torch.cat(ll).double().mean().item()

    timing = compare(
        {"chunk_500": lambda: estimate(500), "chunk_50": lambda: estimate(50)}, repeats
    )
    report = {
        "k": k,
        "images": 200,
        "timing": timing,
        "mean_log_likelihood": {str(c): v for c, v in values.items()},
    }
    print(json.dumps({"iwae_chunk": report}), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vae.bench", description=__doc__.split("\n")[0])
    p.add_argument("--cpu-minutes", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--runs", nargs="+", default=["vae:1", "iwae:50"], help="objective:k")
    p.add_argument("--eval-k", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=1000)
    p.add_argument("--skip-budgets", action="store_true", help="only the speed comparisons")
    p.add_argument("--out", type=Path, default=Path("runs/bench"))
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x_eval = fixed_binarized_mnist("test")[: args.eval_n]
    t_start = time.perf_counter()
    report = {
        "command": "python -m vae.bench" + ("" if not argv else " " + " ".join(argv)),
        "machine": machine(),
        "fused_adam": fused_adam(),
        "iwae_chunk": iwae_chunk(x_eval),
    }
    if not args.skip_budgets:
        shutil.rmtree(args.out, ignore_errors=True)
        report["what"] = "test NLL reached per CPU-minute of training (1 thread), VAE vs IWAE"
        report["metric"] = (
            f"IWAE bound, k={args.eval_k}, first {args.eval_n} fixed-binarized MNIST test images, "
            "nats (lower is better); ELBO with 1 sample"
        )
        report["budget_clock"] = "CPU time of the training process (time.process_time), 1 thread"
        report["rows"] = nll_per_budget(args.runs, args.cpu_minutes, args.out, x_eval, args.eval_k)
    report["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
