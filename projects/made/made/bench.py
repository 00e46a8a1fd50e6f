"""CPU benchmark of MADE: training throughput and NLL reached per CPU-minute (1 thread).

Part 1: images/s of a training step (forward, backward, Adam) for a few architectures, batch 100.
Part 2: for a short fixed wall-clock budget per configuration, train on dynamically binarized
MNIST and report the exact validation NLL (mask 0; and the ensemble of all masks) reached.
Writes ``benchmarks/results.json``. About 4 minutes in total; ``DGM_SMOKE=1`` shrinks it.

    python -m made.bench
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from made.model import MADE
from made.train import lr_at
from shared_utils.data import binarize, fixed_binarized_mnist, minibatches, mnist_tensors
from shared_utils.metrics import dataset_mean
from shared_utils.training import is_smoke, seed_everything

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


def nll_after_budget(config: dict, minutes: float, train, valid, epochs_for_schedule: int) -> dict:
    """Train for ``minutes`` (cosine lr over ``epochs_for_schedule`` epochs); exact valid NLL."""
    gen = seed_everything(0)
    model = MADE(784, **config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    total_steps = epochs_for_schedule * math.ceil(len(train) / 100)
    step, start = 0, time.perf_counter()
    while time.perf_counter() - start < 60 * minutes:
        for batch in minibatches(train, 100, generator=gen):
            model.set_mask(step % model.num_masks)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, 1e-3)
            loss = -model.log_prob(binarize(batch, generator=gen)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if time.perf_counter() - start >= 60 * minutes:
                break
    model.eval()
    model.set_mask(0)
    with torch.no_grad():
        one = dataset_mean(lambda x: -model.log_prob(x), valid, 1000)
        ens = one
        if model.num_masks > 1:
            ens = dataset_mean(lambda x: -model.ensemble_log_prob(x, model.num_masks), valid, 1000)
    row = {
        "minutes": minutes,
        "steps": step,
        "epochs": round(step * 100 / len(train), 2),
        "valid_nll_1mask": round(one, 2),
    }
    if model.num_masks > 1:
        row[f"valid_nll_{model.num_masks}masks"] = round(ens, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m made.bench", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=None, help="per throughput measurement")
    p.add_argument("--minutes", type=float, default=None, help="training budget per config")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    smoke = is_smoke()
    seconds = args.seconds or (1.0 if smoke else 10.0)
    minutes = args.minutes or (0.05 if smoke else 1.0)

    results: dict = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": 1,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "throughput_images_per_s": {},
        "nll_per_budget": {},
        "command": "python -m made.bench",
        "smoke": smoke,
    }
    for name, cfg in THROUGHPUT_CONFIGS.items():
        rate = throughput(cfg, seconds)
        results["throughput_images_per_s"][name] = round(rate)
        print(f"throughput {name:>14}: {rate:7.0f} images/s (training, batch 100, 1 thread)")

    train, _ = mnist_tensors("train-50k")
    train = train.reshape(len(train), -1)
    valid = fixed_binarized_mnist("valid-10k").reshape(10_000, -1)[: 500 if smoke else 2000]
    for name, cfg in BUDGET_CONFIGS.items():
        row = nll_after_budget(cfg, minutes, train, valid, epochs_for_schedule=10)
        results["nll_per_budget"][name] = row
        print(f"{name:>24}: {row}")
    results["nll_per_budget_note"] = (
        f"{minutes} min of 1-thread training each, cosine lr over 10 epochs; exact NLL (nats) on "
        f"the first {len(valid)} fixed-binarized validation images"
    )
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["note"] = (
        "1 torch thread on a 2-core machine shared with other jobs: throughput depends on the "
        "load at the time (load averages above)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
