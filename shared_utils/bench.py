"""Benchmark of the shared library: the cost of the course's sample-quality protocol.

Origin: written for dgm-course (MIT licence).

    python -m shared_utils.bench            # writes shared_utils/benchmarks/results.json

Target (issue: sample-quality metrics): FID + KID + precision/recall + class coverage of 10,000
samples in under 30 s on 2 cores. Measured here part by part, with the 10,000 test images' features
already cached (as they are after the first call in a process) and cold (the first call).
"""

from __future__ import annotations

import time

import torch

from shared_utils import sample_quality as sq
from shared_utils.benchmarking import compare, machine, write_results
from shared_utils.data import evaluation_inputs
from shared_utils.paths import REPO_ROOT
from shared_utils.training import is_smoke

RESULTS = REPO_ROOT / "shared_utils" / "benchmarks" / "results.json"


def main() -> int:
    torch.set_num_threads(2)
    n = 1000 if is_smoke() else sq.PROTOCOL_N
    dataset = "mnist"
    samples, _ = evaluation_inputs(dataset, "train")
    samples = samples[-n:]  # the last training images: not the floor's first 10,000

    start = time.perf_counter()
    sq.reference_features(dataset)
    cold_reference_s = time.perf_counter() - start

    real = sq.reference_features(dataset)
    fake = sq.image_features(samples, dataset)
    parts = compare(
        {
            "features": lambda: sq.image_features(samples, dataset),
            "fid": lambda: sq.fid_from_features(real[0], fake[0]),
            "kid": lambda: sq.kid_from_features(real[0], fake[0]),
            "precision_recall": lambda: sq.precision_recall(real[0], fake[0]),
            "all (evaluate)": lambda: sq.evaluate(samples, dataset),
        },
        repeats=1 if is_smoke() else 3,
        warmup=0,
    )
    total = parts["all (evaluate)"]["median_s"]
    results = {
        "command": "python -m shared_utils.bench",
        "machine": machine(),
        "samples": n,
        "dataset": dataset,
        "test_features_cold_s": round(cold_reference_s, 3),
        "sample_quality_parts": parts,
        "evaluate_10k_s": total,
        "target_s": 30,
        "metrics_of_these_samples": sq.evaluate(samples, dataset),
    }
    if not is_smoke():
        write_results(RESULTS, results)
    print(
        f"{n} samples: evaluate {total:.2f} s (features {parts['features']['median_s']:.2f} s, "
        f"FID {parts['fid']['median_s']:.2f} s, KID {parts['kid']['median_s']:.2f} s, P/R "
        f"{parts['precision_recall']['median_s']:.2f} s); test features cold "
        f"{cold_reference_s:.2f} s; target 30 s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
