"""CPU benchmark of MADE: training throughput, NLL reached per CPU-minute, two speed-ups (1 thread).

``throughput``: images/s of a training step (forward, backward, torch.optim.Adam) for a few
architectures, batch 100 (45 s). ``budget``: for a short fixed wall-clock budget per
configuration, train on dynamically binarized MNIST and report the exact validation NLL (mask 0;
and the ensemble of all masks) reached (3 min). ``adam``: training steps of the shipped
architecture with ``torch.optim.Adam`` and with ``shared_utils.training.adam`` (fused), timed
interleaved, and the largest parameter difference after the same steps (20 s). ``masks``: the same
with the masks rebuilt at every step and taken from the model's uint8 mask cache, and what
installing one mask costs from each kind of cache (25 s). Updates ``benchmarks/results.json`` with
the parts it runs; ``DGM_SMOKE=1`` shrinks them.

    python -m made.bench                       # all parts, about 5 minutes
    python -m made.bench --parts adam masks    # the two speed-ups only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from made.model import MADE, made_masks
from made.train import TrainConfig, train
from shared_utils.benchmarking import compare, machine, write_results
from shared_utils.checkpoints import load_checkpoint, load_model
from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.metrics import dataset_mean
from shared_utils.training import adam, is_smoke

PARTS = ("throughput", "budget", "adam", "masks")
SHIPPED = {"hidden_sizes": [500, 500], "num_masks": 32, "direct": True}  # the shipped model

THROUGHPUT_CONFIGS = {
    "1x500": {"hidden_sizes": [500]},
    "1x500+direct": {"hidden_sizes": [500], "direct": True},
    "2x500": {"hidden_sizes": [500, 500]},
    "2x500+direct": {"hidden_sizes": [500, 500], "direct": True},
}
BUDGET_CONFIGS = {
    "1x500, 1 mask": {"hidden_sizes": [500], "num_masks": 1},
    "1x500, 32 masks": {"hidden_sizes": [500], "num_masks": 32},
    "1x500+direct, 32 masks": {"hidden_sizes": [500], "num_masks": 32, "direct": True},
}


def throughput(config: dict, seconds: float, batch_size: int = 100) -> float:
    """Training images per second of one configuration (after a short warm-up)."""
    torch.manual_seed(0)
    model = MADE(784, num_masks=32, **config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (torch.rand(batch_size, 784) < 0.15).float()
    step, images, start = 0, 0, None
    while True:
        model.set_mask(step % model.num_masks)
        loss = -model.log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step == 5:
            start = time.perf_counter()
        elif step > 5:
            images += batch_size
            if time.perf_counter() - start >= seconds:
                return images / (time.perf_counter() - start)


def nll_after_budget(config: dict, minutes: float, valid: torch.Tensor, out: Path) -> dict:
    """Train with made.train for ``minutes`` of wall-clock time (cosine lr over 10 epochs, no
    per-epoch validation); exact validation NLL with mask 0 and with the ensemble of all masks."""
    cfg = TrainConfig(**config, minutes=minutes, epochs=10, eval_n=0, out=out, quiet=True)
    cfg.save_every = 10**9  # one save, at the stop
    shutil.rmtree(out, ignore_errors=True)
    path = train(cfg)
    steps = load_checkpoint(path).step
    model = load_model(path, MADE)
    with torch.no_grad():
        one = dataset_mean(lambda x: -model.log_prob(x), valid, 1000)
        ens = dataset_mean(lambda x: -model.ensemble_log_prob(x, model.num_masks), valid, 1000)
    row = {
        "minutes": minutes,
        "steps": steps,
        "epochs": round(steps * 100 / 50_000, 2),
        "valid_nll_1mask": round(one, 2),
    }
    if model.num_masks > 1:
        row[f"valid_nll_{model.num_masks}masks"] = round(ens, 2)
    return row


def training_steps(
    model: MADE, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]
) -> Callable[[], None]:
    """A callable that takes one training step of made.train per batch (the next mask each)."""
    state = {"step": 0}

    def steps() -> None:
        for x in batches:
            model.set_mask(state["step"] % model.num_masks)
            loss = -model.log_prob(x).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1

    return steps


def real_batches(n: int, batch_size: int = 100) -> list[torch.Tensor]:
    """The first ``n`` minibatches of dynamically binarized training images (fixed seed)."""
    images = mnist_tensors("train-50k")[0][: n * batch_size].flatten(1)
    return list(binarize(images, torch.Generator().manual_seed(0)).split(batch_size))


def max_difference(a: MADE, b: MADE) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def step_comparison(
    variants: dict[str, tuple[MADE, Callable]], batches: list[torch.Tensor], repeats: int
) -> dict:
    """Interleaved timing of training steps of models that start equal, one per variant
    (model, optimizer factory); images/s and the parameter difference to the first afterwards."""
    candidates = {
        name: training_steps(model, make_optimizer(model.parameters(), lr=1e-3), batches)
        for name, (model, make_optimizer) in variants.items()
    }
    timing = compare(candidates, repeats=repeats)
    models = [model for model, _ in variants.values()]
    for (name, row), model in zip(timing.items(), models, strict=True):
        row["images_per_s"] = round(len(batches) * batches[0].shape[0] / row["median_s"])
        row["max_param_difference_to_first"] = max_difference(models[0], model)
        print(f"{name:>34}: {row['images_per_s']:5d} images/s, {row}")
    return {
        "model": models[0].config(),
        "steps_per_repeat": len(batches),
        "repeats": repeats,
        "steps_in_all_per_variant": len(batches) * (repeats + 1),
        "timing": timing,
    }


def fused_adam_part(batches: list[torch.Tensor], repeats: int) -> dict:
    """torch.optim.Adam (CPU default: a for-loop over parameters) vs the fused kernel."""
    torch.manual_seed(0)
    model = MADE(784, **SHIPPED)
    variants = {
        "torch.optim.Adam": (model, torch.optim.Adam),
        "shared_utils.training.adam (fused)": (copy.deepcopy(model), adam),
    }
    return step_comparison(variants, batches, repeats)


def mask_cache_part(batches: list[torch.Tensor], repeats: int) -> dict:
    """Masks rebuilt at every step (degrees, float masks, copy) vs the uint8 cache; and the cost
    of installing one mask set from degrees, uint8, bool or float32 masks kept per index."""
    torch.manual_seed(0)
    cached = MADE(784, **SHIPPED)
    rebuilt = copy.deepcopy(cached)
    rebuilt.mask_cache_bytes = 0
    rebuilt._mask_cache.clear()
    variants = {"masks rebuilt every step": (rebuilt, adam), "uint8 mask cache": (cached, adam)}
    result = step_comparison(variants, batches, repeats)
    result["bitwise_equal_after"] = (
        result["timing"]["uint8 mask cache"]["max_param_difference_to_first"] == 0.0
    )
    n, layers = cached.num_masks, [*cached.layers, cached.direct]
    degrees = [cached.degrees(i) for i in range(n)]
    kept = {
        dtype: [[m.to(dtype) for m in cached.masks(i)[0]] for i in range(n)]
        for dtype in (torch.bool, torch.float32)
    }

    def install(masks: list[torch.Tensor]) -> None:
        for layer, mask in zip(layers, masks, strict=True):
            layer.set_mask(mask)

    def from_degrees(i: int) -> None:
        hidden, direct = made_masks(degrees[i])
        install([*hidden, direct])

    def each_mask(install_one: Callable[[int], object]) -> Callable[[], None]:
        return lambda: [install_one(i) for i in range(n)]

    ones = {
        "rebuild: degrees, float masks, copy": each_mask(rebuilt.set_mask),
        "degrees only": each_mask(rebuilt.degrees),
        "cached degrees: float masks, copy": each_mask(from_degrees),
        "uint8 cache: copy (kept)": each_mask(cached.set_mask),
        "bool cache: copy": each_mask(lambda i: install(kept[torch.bool][i])),
        "float32 cache: copy": each_mask(lambda i: install(kept[torch.float32][i])),
    }
    install_timing = compare(ones, repeats=repeats)
    result["install_one_mask_ms"] = {
        name: round(1000 * row["median_s"] / n, 3) for name, row in install_timing.items()
    }
    weights = sum(m.numel() for m in cached.masks(0)[0])
    result["cache_mib_for_all_masks"] = {
        "uint8 (kept)": round(n * weights / 2**20, 1),
        "bool": round(n * weights / 2**20, 1),
        "float32": round(4 * n * weights / 2**20, 1),
    }
    print(f"install one mask (ms): {result['install_one_mask_ms']}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m made.bench", description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run")
    p.add_argument("--seconds", type=float, default=None, help="per throughput measurement")
    p.add_argument("--minutes", type=float, default=None, help="training budget per config")
    p.add_argument("--steps", type=int, default=None, help="steps per timed repeat (adam, masks)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (adam, masks)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    smoke = is_smoke()
    command = shlex.join(["python", "-m", "made.bench", *argv])
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}

    if "throughput" in args.parts or "budget" in args.parts:
        results["machine"] = {
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": 1,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        }
        results.update(command=command, smoke=smoke)
    if "throughput" in args.parts:
        results["throughput_images_per_s"] = {}
        for name, cfg in THROUGHPUT_CONFIGS.items():
            rate = throughput(cfg, args.seconds or (1.0 if smoke else 10.0))
            results["throughput_images_per_s"][name] = round(rate)
            print(f"throughput {name:>14}: {rate:7.0f} images/s (training, batch 100, 1 thread)")
    if "budget" in args.parts:
        budget_part(results, smoke, args.minutes or (0.05 if smoke else 1.0))
    if "throughput" in args.parts or "budget" in args.parts:
        results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        results["note"] = (
            "1 torch thread on a 2-core machine shared with other jobs: throughput depends on "
            "the load at the time (load averages above)"
        )
    speedups = {"adam": ("fused_adam", fused_adam_part), "masks": ("mask_cache", mask_cache_part)}
    for part, (key, run_part) in speedups.items():
        if part in args.parts:
            batches = real_batches(args.steps or (3 if smoke else 40))
            results[key] = run_part(batches, args.repeats)
            results[key].update(command=command, machine=machine(), smoke=smoke)
    print(f"wrote {write_results(args.out, results)}")
    return 0


def budget_part(results: dict, smoke: bool, minutes: float) -> None:
    """Part 2: the validation NLL that ``minutes`` of training reach, per configuration."""
    valid = fixed_binarized_mnist("valid-10k").reshape(10_000, -1)[: 500 if smoke else 2000]
    results["nll_per_budget"] = {}
    for i, (name, cfg) in enumerate(BUDGET_CONFIGS.items()):
        row = nll_after_budget(cfg, minutes, valid, Path("runs/bench") / f"budget{i}")
        results["nll_per_budget"][name] = row
        print(f"{name:>24}: {row}")
    results["nll_per_budget_note"] = (
        f"{minutes} min of 1-thread training each with made.train (fused Adam, cosine lr over 10 "
        f"epochs); exact NLL (nats) on the first {len(valid)} fixed-binarized validation images"
    )


if __name__ == "__main__":
    raise SystemExit(main())
