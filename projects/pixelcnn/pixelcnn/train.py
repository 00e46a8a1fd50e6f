"""Train a PixelCNN or (conditional) Gated PixelCNN on binarized MNIST by maximum likelihood.

The loss is the exact negative log-likelihood of Eq. 1 (Pixel RNN paper), in nats per image, on
dynamically binarized training images (a fresh Bernoulli sample of every batch). The loop is plain:
draw a batch, binarize, ``loss = nll.mean()``, Adam step. A resumable checkpoint (weights, optimizer,
RNG states, position in the epoch) is written atomically every ``--save-every`` steps and at the
end, under ``--out``; ``--resume`` continues exactly where it stopped.

Example (the shipped conditional model; see README.md for the exact command used):

    python -m pixelcnn.train --model gated --conditional --channels 32 --layers 6 --minutes 40 \
        --out runs/gated_cond --export checkpoints/gated_cond.safetensors
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pixelcnn.autoregressive import nll_per_image, test_nll
from pixelcnn.model import build_model
from shared_utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from shared_utils.data import DataError, binarize, fixed_binarized_mnist, minibatches, mnist_tensors
from shared_utils.training import CSVLogger, TimeBudget, count_parameters, seed_everything

ARCH_DEFAULTS: dict[str, Any] = {
    "model": "gated",
    "conditional": False,
    "channels": 32,
    "layers": 7,
    "first_kernel": 7,
    "kernel_size": 3,
}
BACKENDS = ("eager", "channels_last", "compile")
# Measured with `python -m pixelcnn.bench` (benchmarks/results.json, 1 thread): for the gated net
# torch.compile trains at 71.5 img/s vs 59.4 eager and 56.3 channels_last; for the plain net
# compile and channels_last (128 / 137 img/s) both beat eager (109). The one-off compile takes
# seconds to minutes (cold cache, busy machine), so short runs should pass --backend eager.
DEFAULT_BACKEND = "compile"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pixelcnn.train",
        description="Train a PixelCNN / Gated PixelCNN on binarized MNIST (exact NLL, Adam).",
    )
    p.add_argument("--model", choices=("pixelcnn", "gated"), default=None, help="default: gated")
    p.add_argument(
        "--conditional",
        action="store_true",
        default=None,
        help="class-conditional Gated PixelCNN (Eq. 4 of the NeurIPS 2016 paper)",
    )
    p.add_argument("--channels", type=int, default=None, help="feature maps per stack (def. 32)")
    p.add_argument("--layers", type=int, default=None, help="residual/gated layers (default 7)")
    p.add_argument("--first-kernel", type=int, default=None, help="first-layer kernel (def. 7)")
    p.add_argument("--kernel-size", type=int, default=None, help="later kernels (default 3)")
    p.add_argument("--epochs", type=float, default=10.0, help="stop after this many epochs")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--binarization",
        choices=("dynamic", "fixed"),
        default="dynamic",
        help="dynamic: new Bernoulli sample per batch; fixed: the repo's fixed binarization",
    )
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N images")
    p.add_argument("--eval-n", type=int, default=1000, help="test images scored after each epoch")
    p.add_argument("--out", type=Path, default=Path("runs/pixelcnn"), help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.safetensors")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=50, help="steps between CSV rows")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help=f"execution mode of the training step (default {DEFAULT_BACKEND}; see bench.py)",
    )
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        help="also write a weights-only checkpoint here at the end (for checkpoints/)",
    )
    return p.parse_args(argv)


def resolve_arch(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Architecture from the flags, or from the checkpoint when resuming (flags must agree)."""
    given = {k: getattr(args, k) for k in ARCH_DEFAULTS if getattr(args, k) is not None}
    if saved is None:
        return {**ARCH_DEFAULTS, **given}
    for k, v in given.items():
        if saved.get(k) != v:
            raise SystemExit(
                f"error: the run in {args.out} was trained with {k}={saved.get(k)!r}, not {v!r}; "
                "drop that flag to resume, or pass a new --out to start a new run."
            )
    return {k: saved.get(k, d) for k, d in ARCH_DEFAULTS.items()}


def prepare_model(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    """The callable used for training steps; the parameters stay those of ``model``."""
    if backend == "channels_last":
        return model.to(memory_format=torch.channels_last)
    if backend == "compile":
        return torch.compile(model)
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m pixelcnn.train " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    last = args.out / "last.safetensors"

    ckpt = None
    if args.resume:
        try:
            ckpt = load_checkpoint(last, load_train_state=True)
        except CheckpointError as err:
            raise SystemExit(f"error: cannot resume: {err}") from None
    elif last.exists():
        raise SystemExit(
            f"error: {last} exists; pass --resume to continue it, or choose another --out."
        )
    arch = resolve_arch(args, None if ckpt is None else ckpt.config)
    if arch["conditional"] and arch["model"] != "gated":
        raise SystemExit("error: --conditional needs --model gated")
    config = {
        **arch,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "binarization": args.binarization,
        "limit_train": args.limit_train,
    }

    gen_perm = seed_everything(args.seed)
    gen_bin = torch.Generator().manual_seed(args.seed + 1)
    model = build_model(arch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    try:
        train_x, train_y = mnist_tensors("train")
        test_x = fixed_binarized_mnist("test")[: args.eval_n]
        _, test_y = mnist_tensors("test")
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    test_y = test_y[: args.eval_n]
    if args.limit_train:
        train_x, train_y = train_x[: args.limit_train], train_y[: args.limit_train]
    if args.binarization == "fixed":
        train_x = binarize(train_x, torch.Generator().manual_seed(args.seed + 2))
    n_train = train_x.shape[0]
    steps_per_epoch = max(1, n_train // args.batch_size)  # drop_last: one shape for torch.compile

    step, epoch, batch_in_epoch, train_seconds, cpu_seconds = 0, 0, 0, 0.0, 0.0
    epoch_start_state = gen_perm.get_state()
    if ckpt is not None:
        model.load_state_dict(ckpt.state_dict)
        ts = ckpt.train_state
        opt.load_state_dict(ts["optimizer"])
        torch.set_rng_state(ts["torch_rng"])
        gen_bin.set_state(ts["gen_bin"])
        epoch_start_state = ts["gen_perm_epoch_start"]
        step, epoch = int(ts["step"]), int(ts["epoch"])
        batch_in_epoch, train_seconds = int(ts["batch_in_epoch"]), float(ts["train_seconds"])
        cpu_seconds = float(ts.get("cpu_seconds", 0.0))
        print(f"resumed {last} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    run = prepare_model(model, args.backend)
    train_log = CSVLogger(args.out / "train.csv", resume_step=step if ckpt else None)
    eval_log = CSVLogger(args.out / "eval.csv", resume_step=step if ckpt else None)
    print(
        f"{arch['model']} conditional={arch['conditional']} channels={arch['channels']} "
        f"layers={arch['layers']}: {count_parameters(model):,} parameters; "
        f"{n_train} training images, {steps_per_epoch} steps/epoch, backend {args.backend}"
    )

    def save(path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
        state = None
        if with_state:
            state = {
                "optimizer": opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "gen_bin": gen_bin.get_state(),
                "gen_perm_epoch_start": epoch_start_state,
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "train_seconds": train_seconds,
                "cpu_seconds": cpu_seconds,
            }
        save_checkpoint(
            path,
            model,
            config=config,
            step=step,
            metrics=metrics,
            command=command,
            train_state=state,
        )

    budget = TimeBudget(args.minutes)
    total_steps = math.ceil(args.epochs * steps_per_epoch)
    window_loss, window_n, window_t = 0.0, 0, time.perf_counter()
    metrics: dict[str, Any] = {}
    stopped_by_budget = False
    while step < total_steps:
        gen_perm.set_state(epoch_start_state)
        order = next(minibatches(torch.arange(n_train), n_train, generator=gen_perm))
        while batch_in_epoch < steps_per_epoch and step < total_steps:
            if budget.exhausted():
                stopped_by_budget = True
                break
            t0, c0 = time.perf_counter(), time.process_time()
            idx = order[batch_in_epoch * args.batch_size : (batch_in_epoch + 1) * args.batch_size]
            x = (
                binarize(train_x[idx].unsqueeze(1), gen_bin)
                if args.binarization == "dynamic"
                else (train_x[idx].unsqueeze(1))
            )
            y = train_y[idx] if arch["conditional"] else None
            if args.backend == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            loss = nll_per_image(run, x, y).mean()  # Eq. 1, nats per image
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            batch_in_epoch += 1
            train_seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
            window_loss += loss.item()
            window_n += 1
            if step % args.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                train_log.log(
                    step=step,
                    epoch=round(epoch + batch_in_epoch / steps_per_epoch, 4),
                    loss=window_loss / window_n,
                    images_per_s=window_n * args.batch_size / (now - window_t),
                    train_seconds=round(train_seconds, 1),
                    cpu_seconds=round(cpu_seconds, 1),
                )
                print(
                    f"step {step:6d}  epoch {epoch + batch_in_epoch / steps_per_epoch:6.2f}  "
                    f"nll {window_loss / window_n:7.2f}  "
                    f"{window_n * args.batch_size / (now - window_t):6.1f} img/s",
                    flush=True,
                )
                window_loss, window_n, window_t = 0.0, 0, now
            if step % args.save_every == 0:
                save(last, True, metrics)
        if stopped_by_budget:
            break
        if batch_in_epoch >= steps_per_epoch:  # end of an epoch: score a fixed test subset
            epoch += 1
            batch_in_epoch = 0
            epoch_start_state = gen_perm.get_state()
            if args.eval_n > 0:
                nll = test_nll(model, test_x, test_y if arch["conditional"] else None)
                metrics = {f"test_nll_first{args.eval_n}": round(nll, 3), "epoch": epoch}
                eval_log.log(step=step, epoch=epoch, test_nll=nll)
                print(f"epoch {epoch}: test NLL (first {args.eval_n} test images) {nll:.2f} nats")

    # train_seconds: wall-clock time of the training steps; cpu_seconds: CPU time of this process
    # in them (the machine is shared, so the two differ)
    metrics.update(train_seconds=round(train_seconds, 1), cpu_seconds=round(cpu_seconds, 1))
    metrics["steps"] = step
    metrics["epochs"] = round(epoch + batch_in_epoch / steps_per_epoch, 3)
    save(last, True, metrics)
    print(
        f"saved {last} (step {step}, {train_seconds / 60:.1f} wall minutes, "
        f"{cpu_seconds / 60:.1f} CPU minutes of training steps)"
    )
    if args.export is not None:
        save(args.export, False, metrics)
        print(f"exported {args.export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
