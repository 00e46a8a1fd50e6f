"""The temperature-schedule comparison: relaxed vs straight-through, annealed vs fixed tau.

    # the four runs, 3 CPU-minutes each on one thread, same seed (the first is the shipped run's
    # first leg, so its snapshot is the shipped run at 3 CPU-minutes):
    python -m gumbel_vae.train --cpu-minutes 3 --out runs/gumbel_vae \
        --ship runs/snap/gumbel_vae_3min.safetensors
    python -m gumbel_vae.train --cpu-minutes 3 --estimator st --out runs/cmp_st \
        --ship runs/snap/cmp_st.safetensors
    python -m gumbel_vae.train --cpu-minutes 3 --anneal-rate 0 --out runs/cmp_fixed1 \
        --ship runs/snap/cmp_fixed1.safetensors
    python -m gumbel_vae.train --cpu-minutes 3 --anneal-rate 0 --tau0 0.5 --out runs/cmp_fixed05 \
        --ship runs/snap/cmp_fixed05.safetensors
    # then, evaluating each with k = 100 on the first 1000 test images (15 s in all):
    python -m gumbel_vae.compare --k 100    # writes results/schedule_comparison.json

Origin: written for dgm-course (MIT licence).

The numbers are those of the discrete model (``Model.evaluate``: IWAE bound with exact samples,
ELBO and the closed-form KL), whatever estimator trained it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from shared_utils.benchmarking import write_results
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import evaluation_inputs
from shared_utils.training import set_threads

from .evaluate import evaluate
from .model import DATASET, Model

PROJECT = Path(__file__).resolve().parent.parent
RUNS = (  # (run folder name, snapshot, label)
    ("gumbel_vae", "gumbel_vae_3min", "Gumbel-softmax, annealed tau (the shipped run's settings)"),
    ("cmp_st", "cmp_st", "straight-through Gumbel-softmax, annealed tau"),
    ("cmp_fixed1", "cmp_fixed1", "Gumbel-softmax, fixed tau = 1"),
    ("cmp_fixed05", "cmp_fixed05", "Gumbel-softmax, fixed tau = 0.5"),
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m gumbel_vae.compare",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--snapshots", type=Path, default=Path("runs/snap"))
    parser.add_argument("--k", type=int, default=100, help="importance samples")
    parser.add_argument("--eval-n", type=int, default=1000, help="first N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=PROJECT / "results" / "schedule_comparison.json"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    x, y = evaluation_inputs(DATASET, "test")
    x, y = x[: args.eval_n], y[: args.eval_n]
    rows = []
    for run, snapshot, label in RUNS:
        path = args.snapshots / f"{snapshot}.safetensors"
        sidecar = read_sidecar(path)
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        means = evaluate(load_model(path, Model), x, y, k=args.k)
        train = sidecar["train"]
        row = {
            "run": run,
            "label": label,
            "estimator": train["estimator"],
            "tau0": train["tau0"],
            "anneal_rate": train["anneal_rate"],
            "nll": round(means["nll_nats"], 3),
            "elbo": round(means["elbo"], 3),
            "kl": round(means["kl"], 3),
            "steps": sidecar["metrics"]["steps"],
            "epochs": sidecar["metrics"]["epochs"],
            "train_cpu_minutes": round(sidecar["metrics"]["train_cpu_s"] / 60, 2),
            "train_command": sidecar["command"],
            "eval_wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(f"{label}: NLL {row['nll']:.2f}, ELBO {row['elbo']:.2f}, KL {row['kl']:.2f}")
    report = {
        "what": "test NLL (IWAE bound, exact samples), ELBO and KL of the discrete model after "
        "equal CPU budgets, per estimator and temperature schedule",
        "command": shlex.join(["python", "-m", "gumbel_vae.compare", *argv]),
        "cpu_minutes": 3,
        "k": args.k,
        "n_test": x.shape[0],
        "test_set": "first images of the MNIST test set, fixed binarization (shared_utils.data)",
        "seed": args.seed,
        "rows": rows,
    }
    print(f"wrote {write_results(args.out, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
