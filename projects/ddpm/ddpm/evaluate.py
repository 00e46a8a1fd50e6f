"""Evaluate a DDPM checkpoint: sample quality (with the floor), FID against steps, guidance, bits/dim.

    python -m ddpm.evaluate CHECKPOINT                       # 10,000 DDIM-50 samples: the table
    python -m ddpm.evaluate CHECKPOINT --classes 0 1 2 3 4 5 6 7 8 9        # class-conditional
    python -m ddpm.evaluate CHECKPOINT --sampler ddpm --steps 1000 --num-samples 2000
    python -m ddpm.evaluate CHECKPOINT --sweep steps         # FID against the number of steps
    python -m ddpm.evaluate CHECKPOINT --sweep guidance      # FID and class accuracy against w
    python -m ddpm.evaluate CHECKPOINT --bpd                 # the variational bound, bits/dim
    python -m ddpm.evaluate CHECKPOINT ... --write           # into the sidecar (and results/)

**Sample quality** (the default): the course's protocol (``shared_utils.sample_quality``):
``--num-samples`` samples (10,000) against the 10,000 test images of the checkpoint's dataset in
the feature space of that dataset's classifier: FID, KID, precision, recall and class coverage,
each next to its floor (the same metrics for real training images; for fewer than 10,000
samples the floor is computed with as many training images, since FID and KID depend on the
sample size). The sampler's flags are ``ddpm.sample``'s; with them at their defaults the samples
are those ``python -m shared_utils.sample_quality CHECKPOINT --model ddpm.model:DDPM`` scores.

**--sweep steps**: for each sampler of ``--sweep-samplers`` (``ddim``: eta = 0; ``ddpm``:
sigma_t^2 = beta_t, "sigma hat" on a sub-sequence; ``ddpm-tilde``: sigma_t^2 = beta_tilde_t, which
is DDIM with eta = 1) and each number of steps of ``--sweep-steps``, the FID (and the other
metrics) of ``--sweep-n`` unconditional samples, all from the same x_T, and the sampling speed;
Song et al.'s Table 1 on our data. **--sweep guidance**: for each w of ``--guidance-scales``,
``--sweep-n`` class-conditional samples (classes 0..9 in turn) guided with weight w (Ho &
Salimans Eq. 6, w = 0 the conditional model), their FID and the accuracy of the dataset's
classifier (``shared_utils.feature_net``) at recognising the class asked for; plus the
unconditional model as a reference row. With ``--write`` a sweep goes to
``<--results>/<checkpoint>_sweep_<steps|guidance>.json`` (default ``results/``: the notebook's
plots) and a summary into the sidecar.

**--bpd**: the variational bound L (Eq. 5) on the first ``--eval-n`` test images, in bits/dim,
with the discretised decoder (Eq. 13), the sum over t estimated by ``--strata`` strata (``vlb.py``),
its standard error over the images, and on the first ``--bpd-check-n`` images the same bound with
every t computed, next to the stratified estimate on those images. Unconditional (null label)
unless ``--classes-from-data``.

Costs (one network evaluation per image per step; two with guidance): see README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm import vlb
from ddpm.model import DDPM, draw
from ddpm.sample import add_sampler_arguments, sampler_options
from ddpm.train import DATASETS, sample_quality
from shared_utils.checkpoints import load_model, read_sidecar
from shared_utils.data import dataset_tensors
from shared_utils.fileio import atomic_write_bytes
from shared_utils.runs import RunError, eval_cli, eval_parser

PROTOCOL_N = 10_000
METRICS = ("fid", "kid", "kid_std", "precision", "recall", "coverage_entropy", "class_histogram")
SWEEP_SAMPLERS = {
    "ddim": {"sampler": "ddim", "eta": 0.0},
    "ddpm": {"sampler": "ddpm", "variance": "beta"},
    "ddpm-tilde": {"sampler": "ddpm", "variance": "beta_tilde"},
}
PROJECT = Path(__file__).resolve().parent.parent


def _rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def class_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose class, by the dataset's classifier, is the one asked for."""
    return float((probs.argmax(1) == labels).double().mean())


def sample_key(n: int, seed: int, options: dict[str, Any]) -> str:
    """What identifies a set of samples: their number, the seed and the sampler's options."""
    return json.dumps({"n": n, "seed": seed, **options}, sort_keys=True)


class DrawnSamples:
    """Samples drawn beforehand, e.g. on a GPU, read from ``.npz`` files (``--samples-from``).

    Each file holds 8-bit image arrays and an ``index`` (JSON as bytes) mapping
    :func:`sample_key` to the array's name, the images/s of drawing it and the device. A set
    asked for that no file holds is drawn here as usual."""

    def __init__(self, paths: list[Path]):
        self.entries: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.devices: set[str] = set()  # where the sets read so far were drawn
        for path in paths:
            try:
                with np.load(path) as f:
                    index = json.loads(f["index"].tobytes().decode())
            except (OSError, KeyError, ValueError) as err:
                raise RunError(
                    f"--samples-from {path}: not a file of drawn samples ({err}); draw them with "
                    "the same checkpoint and settings, or leave the flag out"
                ) from None
            self.entries.update({key: (path, entry) for key, entry in index.items()})

    def get(self, n: int, seed: int, options: dict[str, Any]):
        """``(samples in [0, 1], images/s, device)`` of a stored set, or None."""
        found = self.entries.get(sample_key(n, seed, options))
        if found is None:
            return None
        path, entry = found
        self.devices.add(entry["device"])
        with np.load(path) as f:
            pixels = torch.from_numpy(f[entry["array"]].copy())
        return pixels.float() / 255.0, entry["images_per_s"], entry["device"]


DRAWN: DrawnSamples | None = None  # set from --samples-from


def timed_draw(model: DDPM, n: int, seed: int, precision, **options: Any):
    """Samples and the images per second (wall clock) of drawing them; read from
    ``--samples-from`` when a file there holds this set."""
    stored = DRAWN.get(n, seed, options) if DRAWN is not None else None
    if stored is not None:
        samples, speed, device = stored
        print(f"  ({n} samples read from --samples-from: drawn on {device}, 8-bit)")
        return samples, speed
    start = time.perf_counter()
    with precision:
        samples = draw(model, n, seed, **options).float()
    return samples, n / (time.perf_counter() - start)


def score(samples: torch.Tensor, dataset: str, seed: int) -> tuple[dict[str, Any], torch.Tensor]:
    """The protocol's metrics of ``samples`` and the classifier's class probabilities."""
    sq = sample_quality()
    fake = sq.image_features(samples, dataset)
    return sq.metrics_from_features(sq.reference_features(dataset), fake, seed), fake[1]


def _precision(args: argparse.Namespace):
    if args.autocast == "bf16":
        return torch.autocast(device_type=args.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sampler_text(options: dict[str, Any]) -> str:
    """The sampler's settings in words."""
    if options["sampler"] == "ddim":
        text = f"DDIM, {options['steps']} steps, eta {options['eta']:g}"
    else:
        text = f"DDPM, {options['steps']} steps, sigma^2 = {options['variance']}"
    if options.get("classes") is not None:
        text += f", classes {options['classes']}, w = {options['w']:g}"
    return text + (", x_0 clipped" if options.get("clip_x0") else "")


def quality(args: argparse.Namespace, model: DDPM, dataset: str) -> dict[str, Any]:
    options = sampler_options(args)
    samples, speed = timed_draw(model, args.num_samples, args.seed, _precision(args), **options)
    metrics, probs = score(samples, dataset, args.seed)
    floor = sample_quality().floor(dataset, args.num_samples)
    print(
        f"{args.num_samples} samples of {args.checkpoint.name} ({_sampler_text(options)}"
        f"{'' if options['classes'] else ', unconditional'}; seed "
        f"{args.seed}; {speed:.1f} images/s) against the {dataset} test set:"
    )
    print(sample_quality().table({args.checkpoint.stem: metrics}, floor))
    print("class histogram of the samples:", _rounded(metrics["class_histogram"]))
    result = {k: _rounded(metrics[k]) for k in METRICS}
    if options["classes"] is not None:
        labels = torch.tensor(
            [options["classes"][i % len(options["classes"])] for i in range(len(samples))]
        )
        result["class_accuracy"] = round(class_accuracy(probs, labels), 4)
        print(
            f"class accuracy (the classifier recognises the class asked for): {result['class_accuracy']:.3f}"
        )
    return {
        **result,
        "settings": {**options, "num_samples": args.num_samples, "seed": args.seed},
        "images_per_s": round(speed, 2),
        "floor": {k: _rounded(floor[k]) for k in METRICS},
    }


def _key(args: argparse.Namespace) -> str:
    """The sidecar key of a sample-quality result: the sampler's settings and sample count."""
    o = sampler_options(args)
    key = f"{o['sampler']}{o['steps']}"
    key += f"_eta{o['eta']:g}" if o["sampler"] == "ddim" else f"_{o['variance']}"
    if o["classes"] is not None:
        key += f"_cond_w{o['w']:g}"
    if o["clip_x0"]:
        key += "_clip"
    return f"{key}_n{args.num_samples}" if args.num_samples != PROTOCOL_N else key


def _point_metrics(metrics: dict[str, Any], floor: dict[str, Any], n: int, speed: float):
    return {
        "n": n,
        **{k: _rounded(metrics[k]) for k in METRICS},
        "floor_fid": _rounded(floor["fid"]),
        "floor_kid": _rounded(floor["kid"]),
        "images_per_s": round(speed, 2),
    }


def sweep_steps(args: argparse.Namespace, model: DDPM, dataset: str) -> dict[str, Any]:
    floor = sample_quality().floor(dataset, args.sweep_n)
    points = []
    print(
        f"FID of {args.sweep_n} unconditional samples (seed {args.seed}; the same x_T for every "
        f"point) against the {dataset} test set; floor at {args.sweep_n}: {floor['fid']:.2f}"
    )
    for name in args.sweep_samplers:
        for steps in args.sweep_steps:
            options = {**SWEEP_SAMPLERS[name], "steps": steps, "clip_x0": args.clip_x0}
            samples, speed = timed_draw(model, args.sweep_n, args.seed, _precision(args), **options)
            metrics, _ = score(samples, dataset, args.seed)
            points.append(
                {
                    "sampler": name,
                    "steps": steps,
                    **_point_metrics(metrics, floor, len(samples), speed),
                }
            )
            print(
                f"  {name:<10} {steps:>5} steps: FID {metrics['fid']:8.2f}  KID x1e3 "
                f"{1e3 * metrics['kid']:7.1f}  precision {metrics['precision']:.3f}  recall "
                f"{metrics['recall']:.3f}  {speed:8.1f} images/s",
                flush=True,
            )
    return {"points": points}


def sweep_guidance(args: argparse.Namespace, model: DDPM, dataset: str) -> dict[str, Any]:
    floor = sample_quality().floor(dataset, args.sweep_n)
    classes = list(range(10))
    labels = torch.tensor([classes[i % 10] for i in range(args.sweep_n)])
    base = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta}
    base.update(variance=args.variance, clip_x0=args.clip_x0)
    print(
        f"{args.sweep_n} samples per w ({_sampler_text(base)}, seed {args.seed}) against the "
        f"{dataset} test set; floor at {args.sweep_n}: FID {floor['fid']:.2f}"
    )
    samples, speed = timed_draw(model, args.sweep_n, args.seed, _precision(args), **base)
    metrics, _ = score(samples, dataset, args.seed)
    points = [{"w": None, **_point_metrics(metrics, floor, len(samples), speed)}]
    print(f"  unconditional: FID {metrics['fid']:8.2f}  {speed:7.1f} images/s")
    for w in args.guidance_scales:
        options = {**base, "classes": classes, "w": w}
        samples, speed = timed_draw(model, args.sweep_n, args.seed, _precision(args), **options)
        metrics, probs = score(samples, dataset, args.seed)
        accuracy = class_accuracy(probs, labels)
        points.append(
            {
                "w": w,
                **_point_metrics(metrics, floor, len(samples), speed),
                "class_accuracy": round(accuracy, 4),
            }
        )
        print(
            f"  w = {w:<5g}: FID {metrics['fid']:8.2f}  class accuracy {accuracy:.3f}  precision "
            f"{metrics['precision']:.3f}  recall {metrics['recall']:.3f}  {speed:7.1f} images/s",
            flush=True,
        )
    return {"points": points}


def merge_points(path: Path, points: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The points of a sweep file at ``path`` with ``points`` added: a point measured again
    (same sampler and steps, or same w) replaces the old one, the others are kept, so that a
    sweep can be run in parts (e.g. the 1000-step point with fewer samples)."""
    old = json.loads(path.read_text())["points"] if path.is_file() else []

    def ident(p: dict[str, Any]) -> tuple:
        return (p["sampler"], p["steps"]) if key == "sweep_steps" else (p["w"] is None, p["w"] or 0)

    new = {ident(p) for p in points}
    return sorted([p for p in old if ident(p) not in new] + points, key=ident)


def bits_per_dim(args: argparse.Namespace, model: DDPM, dataset: str) -> dict[str, Any]:
    images, labels = dataset_tensors(dataset, "test")
    n = min(args.eval_n or len(images), len(images))
    use_labels = args.classes_from_data

    def run(count: int, k: int | None, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        out = []
        with _precision(args):
            for i in range(0, count, args.batch_size):
                x = images[i : min(i + args.batch_size, count)].to(args.device)
                y = labels[i : i + len(x)].to(args.device) if use_labels else None
                out.append(vlb.bound(model, x, y, k, args.variance, generator)["bpd"].cpu())
        return torch.cat(out)

    start = time.perf_counter()
    bpd = run(n, args.strata, args.seed)
    wall = time.perf_counter() - start
    mean, se = float(bpd.mean()), float(bpd.std() / len(bpd) ** 0.5) if len(bpd) > 1 else 0.0
    what = "p(x | y)" if use_labels else "p(x) (null label)"
    print(
        f"variational bound of {what}, sigma_t^2 = {args.variance}: {mean:.4f} +- {se:.4f} "
        f"bits/dim on {n} test images ({args.strata} strata of t; {wall:.0f} s)"
    )
    result = {
        "bpd": round(mean, 4),
        "bpd_se": round(se, 4),
        "n": n,
        "strata": args.strata,
        "variance": args.variance,
        "conditional": use_labels,
        "wall_s": round(wall, 1),
    }
    if args.bpd_check_n:
        m = min(args.bpd_check_n, n)
        exact = run(m, None, args.seed + 1)
        strat = bpd[:m]
        result["check"] = {
            "n": m,
            "all_t": round(float(exact.mean()), 4),
            "all_t_se": round(float(exact.std() / m**0.5), 4) if m > 1 else 0.0,
            "stratified": round(float(strat.mean()), 4),
            "stratified_se": round(float(strat.std() / m**0.5), 4) if m > 1 else 0.0,
        }
        c = result["check"]
        print(
            f"check on the first {m} images: every t {c['all_t']:.4f} +- {c['all_t_se']:.4f}, "
            f"{args.strata} strata {c['stratified']:.4f} +- {c['stratified_se']:.4f} bits/dim"
        )
    print("context: Ho et al. report <= 3.75 bits/dim on CIFAR-10 (Table 2), other data")
    return result


def _evaluate(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    for name in ("num_samples", "sweep_n"):
        if getattr(args, name) < 2:
            raise RunError(f"--{name.replace('_', '-')} must be at least 2")
    if args.strata is not None and args.strata < 1:
        raise RunError("--strata must be at least 1")
    model = load_model(args.checkpoint, DDPM, map_location=args.device)
    dataset = read_sidecar(args.checkpoint)["train"].get("dataset")
    if dataset not in DATASETS:
        raise RunError(
            f"{args.checkpoint}: its sidecar names dataset {dataset!r}, not one of {DATASETS}"
        )
    for steps in [args.steps, *(args.sweep_steps if args.sweep == "steps" else [])]:
        if not 1 <= steps <= model.T:
            raise RunError(f"a number of steps must be in 1..{model.T}, not {steps}")
    global DRAWN
    DRAWN = DrawnSamples(args.samples_from) if args.samples_from else None
    command = "python -m ddpm.evaluate " + shlex.join(argv)
    start = time.perf_counter()
    try:
        if args.bpd:
            result, key = bits_per_dim(args, model, dataset), "bpd"
        elif args.sweep == "steps":
            result, key = sweep_steps(args, model, dataset), "sweep_steps"
        elif args.sweep == "guidance":
            result, key = sweep_guidance(args, model, dataset), "sweep_guidance"
        else:
            result, key = quality(args, model, dataset), _key(args)
    except ValueError as err:  # a sampler's option out of range
        raise RunError(str(err)) from None
    info = {
        "dataset": dataset,
        "seed": args.seed,
        "threads": args.threads,
        "autocast": args.autocast,
        "wall_s": round(time.perf_counter() - start, 1),
        "command": command,
    }
    if DRAWN is not None and DRAWN.devices:
        info["samples_drawn_on"] = sorted(DRAWN.devices)
    if not args.write:
        return {}
    if args.sweep is not None:
        path = args.results / f"{args.checkpoint.stem}_{key}.json"
        for point in result["points"]:
            point.update(seed=args.seed, autocast=args.autocast, command=command)
            if "samples_drawn_on" in info:
                point["samples_drawn_on"] = info["samples_drawn_on"]
        points = merge_points(path, result["points"], key)
        payload = {"checkpoint": args.checkpoint.name, "dataset": dataset, "points": points}
        atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())
        print(f"wrote {path} ({len(points)} points)")
        where = path.relative_to(PROJECT) if path.is_relative_to(PROJECT) else path
        summary: dict[str, Any] = {"file": str(where)}
        if key == "sweep_steps":
            summary["fid"] = {f"{p['sampler']}{p['steps']}_n{p['n']}": p["fid"] for p in points}
        else:
            summary["fid"] = {
                ("unconditional" if p["w"] is None else f"w{p['w']:g}") + f"_n{p['n']}": p["fid"]
                for p in points
            }
            summary["class_accuracy"] = {
                f"w{p['w']:g}_n{p['n']}": p["class_accuracy"] for p in points if p["w"] is not None
            }
        return {key: summary}
    if key == "bpd":
        return {"bpd": result["bpd"], "bpd_details": {**result, **info}}
    metrics = {k: result.pop(k) for k in METRICS}
    return {
        **({"fid": metrics["fid"]} if key == "ddim50_eta0" else {}),
        key: {**metrics, **result, **info},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = eval_parser(__doc__, "python -m ddpm.evaluate")
    for action in parser._actions:
        if action.dest == "eval_n":
            action.help = "--bpd: the first N test images (default: all 10,000)"
        if action.dest == "batch_size":
            action.help = "--bpd: images per forward pass"
    parser.add_argument(
        "--num-samples", type=int, default=PROTOCOL_N, help="samples scored (protocol: 10,000)"
    )
    add_sampler_arguments(parser)
    parser.add_argument(
        "--autocast",
        choices=("none", "bf16"),
        default="none",
        help="bf16: the network in mixed precision (2x faster on CPUs with AMX)",
    )
    parser.add_argument(
        "--samples-from",
        type=Path,
        nargs="+",
        default=None,
        help=".npz files of samples drawn beforehand with these settings (e.g. on a GPU)",
    )
    parser.add_argument("--sweep", choices=("steps", "guidance"), default=None)
    parser.add_argument("--sweep-n", type=int, default=1000, help="samples per point of a sweep")
    parser.add_argument(
        "--sweep-steps", type=int, nargs="+", default=[10, 20, 50, 100], help="--sweep steps"
    )
    parser.add_argument(
        "--sweep-samplers",
        nargs="+",
        choices=tuple(SWEEP_SAMPLERS),
        default=["ddim", "ddpm"],
        help="--sweep steps: ddim (eta 0), ddpm (sigma^2 = beta), ddpm-tilde (beta_tilde)",
    )
    parser.add_argument(
        "--guidance-scales",
        type=float,
        nargs="+",
        default=[0.0, 0.5, 1.0, 2.0, 4.0],
        help="--sweep guidance: the values of w",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=PROJECT / "results",
        help="--write of a sweep: the folder of <checkpoint>_sweep_<what>.json",
    )
    parser.add_argument("--bpd", action="store_true", help="the variational bound in bits/dim")
    parser.add_argument(
        "--strata", type=int, default=20, help="--bpd: strata of t (T - 1: every t)"
    )
    parser.add_argument(
        "--bpd-check-n", type=int, default=0, help="--bpd: images with every t computed as well"
    )
    parser.add_argument(
        "--classes-from-data", action="store_true", help="--bpd: the bound of p(x | y)"
    )
    return eval_cli(parser, lambda args: _evaluate(args, argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())
