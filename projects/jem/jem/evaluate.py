"""Evaluate a checkpoint: accuracy, calibration (ECE), OOD AUROC, and SGLD sample quality.

    python -m jem.evaluate checkpoints/jem_fashion-mnist.safetensors
    python -m jem.evaluate checkpoints/jem_fashion-mnist.safetensors \
        --buffer runs/jem_fashion-mnist/last.safetensors --write
    python -m jem.evaluate checkpoints/jem_fashion-mnist.safetensors \
        --noise-samples 1000 --sgld-steps 100 --write

Origin: written for dgm-course (MIT licence).

On the test set of the checkpoint's dataset (all 10,000 images unless ``--eval-n``):

* ``accuracy`` and ``nll_y`` (-log p(y|x)) of the softmax classifier (JEM Eq. 8);
* ``ece``: expected calibration error with ``--bins`` equal-width bins (metrics.py);
* ``auroc_log_px`` and ``auroc_max_softmax``: AUROC of separating the test images from the
  other dataset's test images (Fashion-MNIST <-> MNIST, as many images) with the score
  log p(x) + log Z = LogSumExp_y f(x)[y] (JEM Sec. 5.3) and with max_y p(y|x) (the baseline of
  Hendrycks & Gimpel, 2017). An unconditional EBM (one output) gets ``auroc_log_px`` alone.

Sample quality with the course protocol (``shared_utils.sample_quality.evaluate`` against the
10,000 test images, printed next to its floor): ``--buffer RUN/last.safetensors`` scores the
replay buffer of a training run (10,000 samples, each the end of many chained short SGLD runs),
``--noise-samples N`` scores N fresh samples drawn by ``--sgld-steps`` SGLD steps from uniform
noise (seeded by ``--seed``). Metric names carry the source: ``buffer_fid``, ``noise_fid``, ...
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import torch

from shared_utils.checkpoints import load_checkpoint, load_model, read_sidecar
from shared_utils.data import dataset_tensors
from shared_utils.runs import RunError, eval_cli, eval_parser, subset_suffix
from shared_utils.viz import save_images

from .metrics import ECE_BINS, auroc, ece
from .model import Model, to_image_range, to_model_range
from .sgld import sgld, uniform_noise

OOD = {"fashion-mnist": "mnist", "mnist": "fashion-mnist"}


@torch.no_grad()
def logits_of(model: Model, x01: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The logits [N, K] of uint8 or [0, 1] images [N, 1, 28, 28] (mapped to [-1, 1])."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x01), batch_size):
        x = x01[i : i + batch_size]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        out.append(model(to_model_range(x).to(device)).cpu())
    return torch.cat(out)


def scores(model: Model, dataset: str, n: int | None = None, batch_size: int = 500) -> dict:
    """Per-image quantities of the first ``n`` test images of ``dataset`` and of its OOD set:
    ``correct``, ``confidence``, ``log_px`` (in), ``log_px_ood``, ``confidence_ood``."""
    x_in, y_in = dataset_tensors(dataset, "test")
    x_out, _ = dataset_tensors(OOD[dataset], "test")
    x_in, y_in, x_out = x_in[:n], y_in[:n], x_out[:n]
    logits_in, logits_out = logits_of(model, x_in, batch_size), logits_of(model, x_out, batch_size)
    probs_in, probs_out = logits_in.softmax(1), logits_out.softmax(1)
    return {
        "correct": (logits_in.argmax(1) == y_in).float(),
        "nll_y": (
            -logits_in.log_softmax(1).gather(1, y_in[:, None])[:, 0]
            if logits_in.shape[1] > 1
            else torch.full((len(y_in),), float("nan"))  # no classifier
        ),
        "confidence": probs_in.max(1).values,
        "log_px": logits_in.logsumexp(1),
        "confidence_ood": probs_out.max(1).values,
        "log_px_ood": logits_out.logsumexp(1),
    }


def classifier_metrics(s: dict[str, torch.Tensor], bins: int = ECE_BINS) -> dict[str, float]:
    """Accuracy, NLL of the labels, ECE and the two OOD AUROCs from :func:`scores`."""
    return {
        "accuracy": float(s["correct"].mean()),
        "nll_y": float(s["nll_y"].mean()),
        "ece": ece(s["confidence"], s["correct"], bins),
        "auroc_log_px": auroc(s["log_px"], s["log_px_ood"]),
        "auroc_max_softmax": auroc(s["confidence"], s["confidence_ood"]),
    }


def buffer_samples(run_checkpoint: Path) -> torch.Tensor:
    """The replay buffer [N, 1, 28, 28] in [0, 1] saved in a training run's train state."""
    ckpt = load_checkpoint(run_checkpoint, load_train_state=True)
    try:
        samples = ckpt.train_state["objects"]["buffer"]["samples"]
    except (KeyError, TypeError):
        raise RunError(f"{run_checkpoint} holds no replay buffer (a classifier run?)") from None
    return to_image_range(samples.float())


def noise_samples(
    model: Model, n: int, steps: int, step_size: float, noise: float, seed: int, chunk: int = 500
) -> torch.Tensor:
    """``n`` samples in [0, 1]: ``steps`` SGLD steps from uniform noise, seeded."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for i in range(0, n, chunk):
        x0 = uniform_noise((min(chunk, n - i), 1, 28, 28), generator).to(device)
        out.append(to_image_range(sgld(model.energy, x0, steps, step_size, noise, generator)).cpu())
    return torch.cat(out)


def sample_quality_metrics(samples: torch.Tensor, dataset: str, prefix: str) -> dict[str, Any]:
    """The course protocol's metrics of ``samples`` and the floor, printed as a table."""
    sq = importlib.import_module("shared_utils.sample_quality")
    result = sq.evaluate(samples, dataset)
    floor = sq.floor(dataset)
    print(f"{len(samples)} {prefix} samples against the {dataset} test set:")
    print(sq.table({prefix: result}, floor))
    keys = ("fid", "kid", "kid_std", "precision", "recall", "coverage_entropy")
    out = {f"{prefix}_{k}": round(float(result[k]), 5) for k in keys}
    out[f"{prefix}_n"] = len(samples)
    out[f"{prefix}_class_histogram"] = result["class_histogram"]
    out["floor_fid"] = round(float(floor["fid"]), 5)
    out["floor_kid"] = round(float(floor["kid"]), 5)
    return out


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """The metrics of ``args.checkpoint`` (see the module docstring); printed and returned."""
    model = load_model(args.checkpoint, Model, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset", "fashion-mnist")
    n = args.eval_n
    s = scores(model, dataset, n, args.batch_size)
    total = 10_000
    suffix = subset_suffix(n or total, total)
    metrics = {k + suffix: round(v, 5) for k, v in classifier_metrics(s, args.bins).items()}
    if model.num_classes == 1:  # an unconditional EBM: no classifier, only log p(x)
        metrics = {k: v for k, v in metrics.items() if k.startswith("auroc_log_px")}
    print(
        f"{args.checkpoint}: {dataset} test ({len(s['correct'])} images), OOD {OOD[dataset]}:\n"
        + "\n".join(f"  {k} = {v:.4f}" for k, v in metrics.items())
    )
    if args.buffer is not None:
        samples = buffer_samples(args.buffer)
        metrics.update(sample_quality_metrics(samples, dataset, "buffer"))
        if args.grid is not None:
            save_images(samples[:64], Path(args.grid) / "buffer.png", nrow=8)
    if args.noise_samples:
        from .objective import JEM_SGLD_NOISE, JEM_SGLD_STEP_SIZE

        samples = noise_samples(
            model,
            args.noise_samples,
            args.sgld_steps,
            JEM_SGLD_STEP_SIZE if args.sgld_step_size is None else args.sgld_step_size,
            JEM_SGLD_NOISE if args.sgld_noise is None else args.sgld_noise,
            args.seed,
        )
        metrics.update(sample_quality_metrics(samples, dataset, "noise"))
        metrics["noise_sgld_steps"] = args.sgld_steps
        if args.grid is not None:
            save_images(samples[:64], Path(args.grid) / "noise.png", nrow=8)
    return metrics


def parser() -> argparse.ArgumentParser:
    p = eval_parser(__doc__, "python -m jem.evaluate")
    p.add_argument("--bins", type=int, default=ECE_BINS, help="bins of the ECE")
    p.add_argument(
        "--buffer", type=Path, default=None, help="score a run's replay buffer (last.safetensors)"
    )
    p.add_argument("--noise-samples", type=int, default=0, help="score N samples from noise")
    p.add_argument("--sgld-steps", type=int, default=100, help="SGLD steps of those samples")
    p.add_argument("--sgld-step-size", type=float, default=None, help="default: JEM's 1")
    p.add_argument("--sgld-noise", type=float, default=None, help="default: JEM's 0.01")
    p.add_argument("--grid", type=Path, default=None, help="folder for PNG grids of the samples")
    return p


def main(argv: list[str] | None = None) -> int:
    return eval_cli(parser(), evaluate_checkpoint, argv)


if __name__ == "__main__":
    raise SystemExit(main())
