"""CPU benchmark of PixelCNN / Gated PixelCNN: training throughput, sampling speed, NLL per CPU-minute.

    python -m pixelcnn.bench                    # everything (see README.md for the times)
    python -m pixelcnn.bench --quick            # fewer steps, shorter training budgets
    python -m pixelcnn.bench --only sampling    # one section; the others stay in the file

Writes ``benchmarks/results.json`` (a partial run replaces only its sections). All with one thread:

1. ``training_throughput``: training images/s of both models with three execution modes of the
   training step (``--backend`` eager, channels_last, compile), measured through ``train``; the
   first step, which pays for compilation, is reported apart;
2. ``sampling``: samples/s at batch 64 of the shipped checkpoints with the reference sampler
   (``autoregressive.sample``) and the cached one (``fast_sampling.fast_sample``), timed
   interleaved (``shared_utils.benchmarking.compare``), and whether their samples are identical;
3. ``nll_per_cpu_minute``: exact test NLL (first 500 fixed-binarized test images) after training
   from scratch for a few CPU-time budgets (``--cpu-minutes``, resumed from budget to budget).

The machine is shared, so wall-clock rates move with the load; training rates are also given per
*CPU*-second of this process (``time.process_time``), which is the steadier number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pixelcnn.autoregressive import sample, test_nll
from pixelcnn.fast_sampling import fast_sample
from pixelcnn.model import build_model
from pixelcnn.train import TrainConfig, train
from shared_utils.benchmarking import compare, machine, write_results
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import fixed_binarized_mnist, mnist_tensors
from shared_utils.training import count_parameters, read_csv_log

MODELS: dict[str, dict[str, Any]] = {  # build_model keyword arguments (the shipped sizes)
    "gated_cond": {"kind": "gated", "channels": 32, "n_layers": 7, "n_classes": 10},
    "pixelcnn": {"kind": "pixelcnn", "channels": 64, "n_layers": 7},
}
CHECKPOINTS = {name: Path(f"checkpoints/{name}.safetensors") for name in MODELS}
SECTIONS = ("training_throughput", "sampling", "nll_per_cpu_minute")


def _config(name: str, out: Path, **kwargs: Any) -> TrainConfig:
    return TrainConfig(out=out, eval_n=0, quiet=True, save_every=10**6, **MODELS[name], **kwargs)


def throughput(name: str, backend: str, steps: int, workdir: Path) -> dict[str, Any]:
    """Training images/s (wall and per CPU-second) after two warm-up steps, from ``time.csv``."""
    out = workdir / f"throughput_{name}_{backend}"
    train(_config(name, out, backend=backend, max_steps=steps + 2, log_every=1))
    rows = read_csv_log(out / "time.csv")  # one row per step: wall_s, cpu_s since the start
    first, warm, last = rows[0], rows[1], rows[-1]
    images = steps * TrainConfig.batch_size
    result = {
        "model": name,
        "backend": backend,
        "batch_size": TrainConfig.batch_size,
        "timed_steps": steps,
        "images_per_s_wall": round(images / (last["wall_s"] - warm["wall_s"]), 1),
        "images_per_cpu_s": round(images / (last["cpu_s"] - warm["cpu_s"]), 1),
        "first_step_s_wall": round(first["wall_s"], 1),
        "first_step_s_cpu": round(first["cpu_s"], 1),
    }
    print(json.dumps(result), flush=True)
    return result


def sampling_speed(name: str, n: int = 64, repeats: int = 3) -> dict[str, Any]:
    """Samples/s of the reference and the fast sampler on a shipped checkpoint, interleaved."""
    model = load_model(CHECKPOINTS[name], build_model)
    y = torch.arange(n) % model.n_classes if model.n_classes else None
    drawn: dict[str, torch.Tensor] = {}

    def timed(label: str, sampler):
        def draw() -> None:
            drawn[label] = sampler(model, n, y, generator=torch.Generator().manual_seed(0))

        return draw

    times = compare(
        {"reference": timed("reference", sample), "fast": timed("fast", fast_sample)},
        repeats=repeats,
        warmup=0,
    )
    differ = (drawn["reference"] != drawn["fast"]).flatten(1).any(1)
    result = {
        "model": name,
        "checkpoint": str(CHECKPOINTS[name]),
        "batch": n,
        "dtype": str(next(model.parameters()).dtype),
        "reference_samples_per_s": round(n / times["reference"]["median_s"], 2),
        "fast_samples_per_s": round(n / times["fast"]["median_s"], 2),
        "speedup": times["fast"]["speedup_vs_first"],
        "reference_samples_per_cpu_s": round(n / times["reference"]["median_cpu_s"], 2),
        "fast_samples_per_cpu_s": round(n / times["fast"]["median_cpu_s"], 2),
        "identical_samples": not differ.any().item(),
        "images_differing": int(differ.sum()),
        "times": times,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "times"}), flush=True)
    return result


def nll_per_cpu_minute(
    name: str, cpu_minutes: list[float], test: tuple, workdir: Path
) -> dict[str, Any]:
    """Train from scratch (eager, Adam 1e-3, batch 64) and score the first 500 test images each
    time the run reaches one of the CPU budgets (the run is resumed from one to the next)."""
    out, points = workdir / f"nll_{name}", []
    for i, budget in enumerate(cpu_minutes):
        train(_config(name, out, cpu_minutes=budget, resume=i > 0))
        model = load_model(out / "last.safetensors", build_model)
        nll = test_nll(model, test[0], test[1] if model.n_classes else None)
        steps = read_sidecar(out / "last.safetensors")["metrics"]["steps"]
        points.append(
            {
                "cpu_minutes": budget,
                "steps": steps,
                "images": steps * TrainConfig.batch_size,
                "test_nll_first500": round(nll, 2),
            }
        )
        print(json.dumps({"model": name, **points[-1]}), flush=True)
    return {"model": name, "batch_size": TrainConfig.batch_size, "points": points}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and shorter budgets")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    p.add_argument("--backends", nargs="+", default=["eager", "channels_last", "compile"])
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings of each sampler")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    command = "python -m pixelcnn.bench" + (" --quick" if args.quick else "")
    if args.only != list(SECTIONS):
        command += " --only " + " ".join(args.only)
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "training_throughput" in args.only:
            steps = 3 if args.quick else 5
            results["training_throughput"] = [
                throughput(name, backend, steps, workdir)
                for name in MODELS
                for backend in args.backends
            ]
        if "sampling" in args.only:
            rows = [sampling_speed(name, 64, args.repeats) for name in MODELS]
            results["sampling"] = {"command": command, "machine": machine(), "rows": rows}
        if "nll_per_cpu_minute" in args.only:
            budgets = [0.25, 0.5] if args.quick else [0.5, 1.0, 2.0]
            test = (fixed_binarized_mnist("test")[:500], mnist_tensors("test")[1][:500])
            results["nll_per_cpu_minute"] = [
                nll_per_cpu_minute(name, budgets, test, workdir) for name in MODELS
            ]
    if args.only == list(SECTIONS):  # a full run describes the whole file
        results.update(command=command, machine=machine())
        results["models"] = {
            k: {**v, "parameters": count_parameters(build_model(**v))} for k, v in MODELS.items()
        }
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    results.setdefault("section_seconds", {})[" ".join(args.only)] = {
        "wall": round(wall, 1),
        "cpu": round(cpu, 1),
    }
    write_results(args.out, results)
    print(f"wrote {args.out} in {wall / 60:.1f} min wall ({cpu / 60:.1f} CPU min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
