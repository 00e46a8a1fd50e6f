"""Side-by-side timing for benchmarks: interleaved repeats, medians, machine description.

Origin: written for dgm-course (MIT licence).

Why interleaved: the course machines are shared, so the load changes while a benchmark runs. Timing
variant A five times and then variant B five times lets a load change masquerade as a speed-up;
alternating A, B, A, B, ... exposes both to the same conditions, and the median discards outliers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def compare(
    candidates: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    """Time each zero-argument callable ``repeats`` times, interleaved; wall and CPU medians.

    Returns ``{name: {"median_s", "median_cpu_s", "runs_s"}}``; ``speedup_vs_first`` is added for
    every candidate after the first (the first is the baseline).
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    result = {
        name: {
            "median_s": round(statistics.median(w for w, _ in runs), 4),
            "median_cpu_s": round(statistics.median(c for _, c in runs), 4),
            "runs_s": [round(w, 4) for w, _ in runs],
        }
        for name, runs in times.items()
    }
    names = list(result)
    for name in names[1:]:
        result[name]["speedup_vs_first"] = round(
            result[names[0]]["median_s"] / result[name]["median_s"], 3
        )
    return result


def machine() -> dict[str, Any]:
    """Where a benchmark ran: processor, cores, torch version and threads, load average."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> Path:
    """Write a benchmark's results as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
