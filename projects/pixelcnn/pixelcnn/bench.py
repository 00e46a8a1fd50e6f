"""CPU benchmark of PixelCNN / Gated PixelCNN: training throughput, sampling speed, NLL per CPU-minute.

    python -m pixelcnn.bench            # about 5 minutes (measured: 5.1 min, 1 thread)
    python -m pixelcnn.bench --quick    # fewer steps, shorter training budgets

Writes ``benchmarks/results.json``. Three measurements, all with one thread:

1. training images/s for both models and three execution modes: eager, ``channels_last`` memory
   format, and ``torch.compile`` (its one-off compile time is reported separately);
2. sampling samples/s (784 sequential forward passes for a batch);
3. exact test NLL (first 500 fixed-binarized test images) reached after short CPU-time budgets of
   training from scratch, for both models.

The machine is shared, so wall-clock rates move with the load; every rate is also given per
*CPU*-second of this process (``time.process_time``), which is the steadier number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pixelcnn.autoregressive import nll_per_image, sample, test_nll
from pixelcnn.model import build_model
from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.training import count_parameters

MODELS: dict[str, dict[str, Any]] = {
    "gated_cond": {"model": "gated", "conditional": True, "channels": 32, "layers": 7},
    "pixelcnn": {"model": "pixelcnn", "conditional": False, "channels": 64, "layers": 7},
}


class Clock:
    """Wall and CPU time since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def batch(x_u8: torch.Tensor, labels: torch.Tensor, n: int, gen: torch.Generator, config: dict):
    idx = torch.randint(0, x_u8.shape[0], (n,), generator=gen)
    y = labels[idx] if config["conditional"] else None
    return binarize(x_u8[idx].unsqueeze(1), gen), y


def throughput(
    name: str, backend: str, data: tuple, steps: int, batch_size: int = 64
) -> dict[str, Any]:
    """Training images/s (wall and per CPU-second) after warm-up; compile time reported apart."""
    config = MODELS[name]
    torch.manual_seed(0)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = model
    if backend == "channels_last":
        run = model.to(memory_format=torch.channels_last)
    elif backend == "compile":
        run = torch.compile(model)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        x, y = batch(*data, batch_size, gen, config)
        if backend == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        loss = nll_per_image(run, x, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    clock = Clock()
    step()  # the first step pays for compilation
    first_wall, first_cpu = clock.read()
    step()
    clock = Clock()
    for _ in range(steps):
        step()
    wall, cpu = clock.read()
    result = {
        "model": name,
        "backend": backend,
        "batch_size": batch_size,
        "timed_steps": steps,
        "images_per_s_wall": round(steps * batch_size / wall, 1),
        "images_per_cpu_s": round(steps * batch_size / cpu, 1),
        "first_step_s_wall": round(first_wall, 1),
        "first_step_s_cpu": round(first_cpu, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def sampling_speed(name: str, n: int) -> dict[str, Any]:
    torch.manual_seed(0)
    config = MODELS[name]
    model = build_model(config)
    y = torch.arange(n) % 10 if config["conditional"] else None
    clock = Clock()
    sample(model, n, y, generator=torch.Generator().manual_seed(0))
    wall, cpu = clock.read()
    result = {
        "model": name,
        "n": n,
        "samples_per_s_wall": round(n / wall, 3),
        "samples_per_cpu_s": round(n / cpu, 3),
        "seconds_wall": round(wall, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def nll_per_cpu_minute(
    name: str, data: tuple, test: tuple, cpu_minutes: list[float], batch_size: int = 64
) -> dict[str, Any]:
    """Train from scratch (eager, Adam 1e-3) and score the first 500 test images at each budget."""
    config = MODELS[name]
    torch.manual_seed(0)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    points, steps, train_cpu = [], 0, 0.0
    for budget in cpu_minutes:
        while train_cpu < 60 * budget:
            c0 = time.process_time()
            x, y = batch(*data, batch_size, gen, config)
            loss = nll_per_image(model, x, y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            train_cpu += time.process_time() - c0
        nll = test_nll(model, test[0], test[1] if config["conditional"] else None)
        points.append(
            {
                "cpu_minutes": budget,
                "steps": steps,
                "images": steps * batch_size,
                "test_nll_first500": round(nll, 2),
            }
        )
        print(json.dumps({"model": name, **points[-1]}), flush=True)
    return {"model": name, "batch_size": batch_size, "points": points}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and shorter budgets")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    p.add_argument("--backends", nargs="+", default=["eager", "channels_last", "compile"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = Clock()
    x_u8, labels = mnist_tensors("train")
    data = (x_u8, labels)
    _, test_labels = mnist_tensors("test")
    test = (fixed_binarized_mnist("test")[:500], test_labels[:500])
    steps = 3 if args.quick else 5
    budgets = [0.25, 0.5] if args.quick else [0.5, 1.0, 2.0]

    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "models": {
            k: {**v, "parameters": count_parameters(build_model(v))} for k, v in MODELS.items()
        },
        "command": "python -m pixelcnn.bench" + (" --quick" if args.quick else ""),
    }
    results["training_throughput"] = [
        throughput(name, backend, data, steps) for name in MODELS for backend in args.backends
    ]
    results["sampling"] = [sampling_speed(name, 10) for name in MODELS]
    results["nll_per_cpu_minute"] = [
        nll_per_cpu_minute(name, data, test, budgets) for name in MODELS
    ]
    wall, cpu = start.read()
    results["bench_seconds_wall"], results["bench_seconds_cpu"] = round(wall, 1), round(cpu, 1)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} in {wall / 60:.1f} min wall ({cpu / 60:.1f} CPU min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
