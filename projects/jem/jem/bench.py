"""Speed on the CPU: JEM and plain-classifier training images/s, SGLD steps/s, sampling images/s.

    python -m jem.bench                  # writes benchmarks/results.json (about a minute)
    DGM_SMOKE=1 python -m jem.bench      # tiny: checks that it runs, writes nothing

Origin: written for dgm-course (MIT licence).

**Training**: train.py's ``train_step`` with train.py's defaults (width-16 network, batch 64) on
real Fashion-MNIST batches, for ``--objective jem`` (20 SGLD steps of 64 chains from the replay
buffer, then the hybrid loss, backward, Adam) and for the plain classifier (no SGLD), timed
interleaved with ``shared_utils.benchmarking.compare`` (medians of the repeats). **SGLD**: one
SGLD step (energy, its input gradient, the update) on a batch of 64 chains. **Sampling**: a
whole sample from noise as ``Model.sample`` draws it (``SAMPLE_STEPS`` SGLD steps) per image.

**Quality per CPU-minute** (read from the shipped files, nothing retrained): the test accuracy
of every evaluation of the shipped runs (``results/<run>/eval.csv``, 1,000 test images) against
the CPU-minutes spent (``time.csv``) with the CPU-minutes to reach a few accuracies, and the
replay buffer's FID of the checkpoints kept at several budgets (``checkpoints/<run>.json`` and
the earlier ``results/<run>_<N>min.json`` sidecars) against their training CPU-minutes.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import torch

from shared_utils.benchmarking import (
    bench_parser,
    compare,
    eval_curve,
    machine,
    reached_text,
    sidecar_curve,
    time_to_reach,
    write_results,
)
from shared_utils.data import dataset_tensors
from shared_utils.training import adam, count_parameters, is_smoke

from . import objective as obj
from .model import SAMPLE_STEPS, Model
from .sgld import sgld, uniform_noise
from .train import TrainConfig, model_kwargs, train_step

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results.json"
ACCURACIES = (0.6, 0.7, 0.8, 0.9)


def quality_per_cpu_minute() -> dict[str, dict]:
    """Per shipped run folder in results/: its test-accuracy curve against CPU-minutes (with
    the CPU-minutes to reach ``ACCURACIES``) and the replay buffer's FID per kept budget."""
    report: dict[str, dict] = {}
    for folder in sorted(p for p in (PROJECT / "results").iterdir() if p.is_dir()):
        entry: dict[str, object] = {}
        sidecar = PROJECT / "checkpoints" / f"{folder.name}.json"
        classes = (
            json.loads(sidecar.read_text())["model"]["num_classes"] if sidecar.is_file() else 10
        )
        if (folder / "eval.csv").is_file() and classes > 1:  # an IGEBM has no classifier
            curve = eval_curve(folder, "test_acc")
            entry["test_acc"] = curve
            entry["reached"] = time_to_reach(curve, "test_acc", ACCURACIES, lower_is_better=False)
        sidecars = sorted((PROJECT / "results").glob(f"{folder.name}_*min.json"))
        sidecars += [p for p in [PROJECT / "checkpoints" / f"{folder.name}.json"] if p.is_file()]
        entry["buffer_fid"] = sidecar_curve(sidecars, "buffer_fid", {"floor_fid": "floor_fid"})
        report[folder.name] = entry
    return report


def training_loop(cfg: TrainConfig, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    """A function running train.py's ``train_step`` once per batch on a fresh model of ``cfg``."""
    torch.manual_seed(0)
    model = Model(**model_kwargs(cfg))
    optimizer = adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)
    buffer = obj.new_buffer(cfg.buffer_size, cfg.reinit, generator)

    def loop() -> None:
        for x, y in batches:
            train_step(model, optimizer, buffer, x.float() / 255.0, y, generator, cfg, cfg.lr)

    return loop


def main(argv: list[str] | None = None) -> int:
    import sys

    smoke = is_smoke()
    parser = bench_parser("python -m jem.bench", __doc__, RESULTS, smoke=smoke)
    parser.add_argument("--steps", type=int, default=1 if smoke else 3, help="steps per repeat")
    parser.add_argument("--repeats", type=int, default=1 if smoke else 5, help="timed repeats")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    images, labels = dataset_tensors(cfg.dataset, "train")
    bs = cfg.batch_size
    batches = [
        (images[i * bs : (i + 1) * bs], labels[i * bs : (i + 1) * bs]) for i in range(args.steps)
    ]
    jem_cfg = TrainConfig(objective="jem")
    clf_cfg = TrainConfig(objective="classifier")
    timing = compare(
        {"jem": training_loop(jem_cfg, batches), "classifier": training_loop(clf_cfg, batches)},
        repeats=args.repeats,
    )
    model = Model(**model_kwargs(cfg))
    x = uniform_noise((bs, 1, 28, 28), torch.Generator().manual_seed(0))
    sgld_steps = 2 if smoke else 10
    n_sample = 8 if smoke else 64
    sample_steps = 2 if smoke else SAMPLE_STEPS
    gen = torch.Generator().manual_seed(0)
    sampling = compare(
        {
            "sgld": lambda: sgld(model.energy, x, sgld_steps, 1.0, 0.01, gen),
            "sample": lambda: model.sample(n_sample, gen, steps=sample_steps),
        },
        repeats=args.repeats,
    )
    per_step = {k: v["median_s"] / args.steps for k, v in timing.items()}
    report = {
        "what": "CPU: train.py's train_step (JEM with 20 SGLD steps; plain classifier), one SGLD "
        "step on 64 chains, Model.sample from noise",
        "command": shlex.join(["python", "-m", "jem.bench", *argv]),
        "machine": machine(),
        "model": model.config(),
        "parameters": count_parameters(model),
        "batch_size": bs,
        "jem_sgld_steps_per_train_step": jem_cfg.sgld_steps,
        "train": {
            k: {"steps_per_s": round(1 / s, 3), "images_per_s": round(bs / s, 1)}
            for k, s in per_step.items()
        },
        "sgld": {
            "chains": bs,
            "steps_per_s": round(sgld_steps / sampling["sgld"]["median_s"], 2),
            "chain_steps_per_s": round(bs * sgld_steps / sampling["sgld"]["median_s"], 1),
        },
        "sampling": {
            "sgld_steps": sample_steps,
            "batch": n_sample,
            "images_per_s": round(n_sample / sampling["sample"]["median_s"], 2),
        },
        "timing": {**timing, **sampling},
        "quality_per_cpu_minute": quality_per_cpu_minute(),
    }
    print(
        f"train, batch {bs}: JEM {report['train']['jem']['images_per_s']} images/s, "
        f"classifier {report['train']['classifier']['images_per_s']} images/s; "
        f"SGLD {report['sgld']['steps_per_s']} steps/s on {bs} chains; "
        f"sampling ({sample_steps} SGLD steps) {report['sampling']['images_per_s']} images/s"
    )
    for run, q in report["quality_per_cpu_minute"].items():
        line = reached_text(q["reached"]) if "reached" in q else "no classifier"
        fids = ", ".join(
            f"{p['buffer_fid']:.1f} at {p['cpu_minutes']:.1f} CPU-min" for p in q["buffer_fid"]
        )
        print(f"{run}: {line}; buffer FID {fids or '-'}")
    if args.results is not None:
        print(f"wrote {write_results(args.results, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
