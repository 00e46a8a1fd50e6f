"""Side-by-side timing for benchmarks: interleaved repeats, medians, machine description.

Origin: written for dgm-course (MIT licence).

Why interleaved: the course machines are shared, so the load changes while a benchmark runs. Timing
variant A five times and then variant B five times lets a load change masquerade as a speed-up;
alternating A, B, A, B, ... exposes both to the same conditions, and the median discards outliers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared_utils.fileio import atomic_write_bytes
from shared_utils.training import set_threads


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


def bench_parser(prog: str, doc: str, results: Path, *, smoke: bool) -> argparse.ArgumentParser:
    """The parser of a project's ``bench.py`` with the flags they all share, ``--threads`` and
    ``--results`` (the JSON written; none in smoke mode); the project adds its own."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--results",
        type=Path,
        default=None if smoke else results,
        help="JSON written (smoke: none)",
    )
    return parser


def parse_bench_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv`` (None: the command line) and set torch's CPU threads; returns the arguments
    and the argv, for the command recorded in the results."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    set_threads(args.threads)
    return args, argv


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
    atomic_write_bytes(path, (json.dumps(results, indent=2) + "\n").encode())  # never half-written
    return path


def time_to_reach(
    points: list[dict[str, Any]],
    key: str,
    thresholds: tuple[float, ...],
    time_key: str = "cpu_minutes",
    lower_is_better: bool = True,
) -> dict[str, float | None]:
    """For each threshold, ``time_key`` of the first point whose ``key`` reaches it (at or below
    it when lower is better): "metric reached per CPU-minute" of a training curve. None where the
    run never reached it."""
    sign = "<=" if lower_is_better else ">="
    reached: dict[str, float | None] = {}
    for threshold in thresholds:
        hit = next(
            (
                p
                for p in points
                if (p[key] <= threshold if lower_is_better else p[key] >= threshold)
            ),
            None,
        )
        reached[f"{key}{sign}{threshold:g}"] = None if hit is None else hit[time_key]
    return reached


def reached_text(reached: dict[str, float | None], unit: str = "CPU-min") -> str:
    """``time_to_reach``'s result as one line: ``fid<=40 after 1.9 CPU-min, fid<=30 never``."""
    return ", ".join(
        f"{k} {'never' if v is None else f'after {v:.1f} {unit}'}" for k, v in reached.items()
    )


def _interpolate(rows: list[dict[str, float]], step: float, key: str) -> float | None:
    """``key`` of time.csv at ``step``, linear between rows (from (0, 0)); extrapolated from the
    last two rows past the end; None without rows."""
    points = [(0.0, 0.0)] + [(r["step"], r[key]) for r in rows]
    if len(points) < 2:
        return None
    for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
        if s0 <= step <= s1 and s1 > s0:
            return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    (s0, v0), (s1, v1) = points[-2], points[-1]
    return v1 + (v1 - v0) * (step - s1) / max(s1 - s0, 1e-9)


def eval_curve(run_dir: str | os.PathLike, metric: str) -> list[dict[str, Any]]:
    """A run folder's evaluations (``eval.csv``: step, epoch, ``metric``) with the CPU- and
    wall-minutes the run had spent at each step (``time.csv``, interpolated between its rows).
    The curve of a metric against training time that the benches report."""
    from shared_utils.training import read_csv_log

    run_dir = Path(run_dir)
    evals, times = read_csv_log(run_dir / "eval.csv"), read_csv_log(run_dir / "time.csv")
    points = []
    for row in evals:
        cpu, wall = _interpolate(times, row["step"], "cpu_s"), _interpolate(
            times, row["step"], "wall_s"
        )
        points.append(
            {
                "step": int(row["step"]),
                "epoch": row["epoch"],
                metric: round(row[metric], 4),
                "cpu_minutes": None if cpu is None else round(cpu / 60, 2),
                "wall_minutes": None if wall is None else round(wall / 60, 2),
            }
        )
    return points


def _lookup(metrics: Any, path: str) -> Any:
    """``metrics["a"]["b"]`` for ``path`` "a/b"; None where a key is missing."""
    for key in path.split("/"):
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def sidecar_curve(
    sidecars: list[str | os.PathLike], metric: str, extra: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """A metric against training time across checkpoints of one run saved at several budgets:
    one point per sidecar (a checkpoint's ``.json``) whose metrics hold ``metric`` (a path
    such as "sample_quality_T5_eps0.0002_n500/fid"), with the CPU-minutes its training had
    spent (``metrics.train_cpu_s``) and its steps, sorted by CPU-minutes; ``extra`` names more
    values by the same kind of path. A missing file raises; a sidecar without the metric is
    left out (it was not evaluated that way)."""
    points = []
    for path in sidecars:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such sidecar; run the evaluation that writes it")
        metrics = json.loads(path.read_text()).get("metrics", {})
        value = _lookup(metrics, metric)
        if value is None or "train_cpu_s" not in metrics:
            continue
        point = {
            "sidecar": path.name,
            "steps": metrics.get("steps"),
            "cpu_minutes": round(metrics["train_cpu_s"] / 60, 2),
            metric.split("/")[-1]: value,
        }
        point.update({name: _lookup(metrics, spec) for name, spec in (extra or {}).items()})
        points.append(point)
    return sorted(points, key=lambda p: p["cpu_minutes"])
