"""Train a VAE (ELBO) or an IWAE (bound L_k) on dynamically binarized MNIST.

    python -m vae.train --objective vae --k 1 --minutes 30 --out runs/vae_k1
    python -m vae.train --objective iwae --k 50 --minutes 35 --out runs/iwae_k50
    python -m vae.train ... --resume          # continue the run in --out where it stopped

A plain loop: draw a minibatch of the 60k training images, binarize it afresh (dynamic
binarization), take one Adam step on minus the bound. Every ``--save-every`` epochs (and at the
end) ``<out>/last.safetensors`` is written atomically with the optimizer and RNG state, so
``--resume`` continues exactly; the final weights-only checkpoint ``<out>/<name>.safetensors``
carries the config and the exact command in its sidecar. The learning rate follows either a
constant or the paper's schedule (Burda et al. Sec. 5: lr = 1e-3 * 10^(-i/7) for 3^i epochs,
i = 0..7, Adam eps = 1e-4), cut short by the epoch or time budget.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from shared_utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from shared_utils.data import DataError, binarize, fixed_binarized_mnist, minibatches, mnist_tensors
from shared_utils.training import CSVLogger, evaluating, seed_everything
from vae.model import VAE
from vae.objectives import elbo, training_loss


def burda_stage(epoch: int) -> int:
    """Stage i of the paper's schedule that epoch ``epoch`` (0-based) is in; stage i lasts 3^i."""
    i, end = 0, 1
    while epoch >= end:
        i += 1
        end += 3**i
    return i


def learning_rate(epoch: int, lr: float, schedule: str) -> float:
    """``constant``: lr. ``burda``: lr * 10^(-i/7) in stage i (Burda et al. 2016, Sec. 5)."""
    if schedule == "constant":
        return lr
    if schedule == "burda":
        return lr * 10 ** (-burda_stage(epoch) / 7)
    raise ValueError(f"unknown schedule {schedule!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m vae.train", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument("--objective", choices=["vae", "iwae"], default="vae")
    p.add_argument("--k", type=int, default=1, help="samples per example (k of L_k)")
    p.add_argument("--epochs", type=int, default=3280, help="max epochs (paper: 3280)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (resumes count)")
    p.add_argument(
        "--cpu-minutes", type=float, default=None, help="budget in CPU time of this process"
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--batch-size", type=int, default=100, help="paper: 20")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--adam-eps", type=float, default=1e-4, help="paper: 1e-4")
    p.add_argument("--schedule", choices=["burda", "constant"], default="burda")
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--hidden-dim", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--n-monitor", type=int, default=1000, help="test images for the per-epoch ELBO")
    p.add_argument("--out", type=Path, default=Path("runs/vae"))
    p.add_argument("--name", default="model", help="final checkpoint: <out>/<name>.safetensors")
    p.add_argument("--save-every", type=int, default=5, help="epochs between resumable saves")
    p.add_argument("--log-every", type=int, default=100, help="steps between CSV log rows")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.safetensors")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def run_config(args: argparse.Namespace, model: VAE) -> dict[str, Any]:
    """The checkpoint config: the model's shape plus the training settings that define the run."""
    keys = ["objective", "k", "batch_size", "lr", "adam_eps", "schedule", "seed", "limit_train"]
    return {**model.config(), **{key: getattr(args, key) for key in keys}}


def train(args: argparse.Namespace, command: str) -> Path:
    """Run the training loop described by ``args``; return the final checkpoint's path."""
    torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    images, _ = mnist_tensors("train")
    if args.limit_train:
        images = images[: args.limit_train]
    x_train = images.reshape(images.shape[0], -1)  # uint8 [N, 784]; binarized per batch
    x_monitor = fixed_binarized_mnist("test")[: args.n_monitor].reshape(-1, 784)

    model = VAE(args.latent_dim, args.hidden_dim)
    model.init_output_bias(x_train.float().mean(0) / 255.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, eps=args.adam_eps)
    config = run_config(args, model)
    last = args.out / "last.safetensors"

    epoch, step, elapsed_before, cpu_before = 0, 0, 0.0, 0.0
    if args.resume:
        if not last.exists():
            raise CheckpointError(f"nothing to resume: {last} does not exist; drop --resume.")
        ckpt = load_checkpoint(last, model, load_train_state=True)
        if ckpt.config != config:
            raise CheckpointError(
                f"{last} was trained with config {ckpt.config}, not {config}; use the same "
                "options as the original run (see its sidecar) or a new --out."
            )
        state = ckpt.train_state
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        epoch, step, elapsed_before = int(state["epoch"]), ckpt.step, float(state["elapsed"])
        cpu_before = float(state.get("cpu", 0.0))
        if not args.quiet:
            print(f"resumed from {last} at epoch {epoch}, step {step}")
    logger = CSVLogger(args.out / "log.csv", resume_step=step if args.resume else None)

    budget_s = None if args.minutes is None else 60.0 * args.minutes
    cpu_budget_s = None if args.cpu_minutes is None else 60.0 * args.cpu_minutes
    start, cpu_start = time.perf_counter(), time.process_time()
    elapsed = lambda: elapsed_before + time.perf_counter() - start
    cpu_used = lambda: cpu_before + time.process_time() - cpu_start  # CPU seconds, all threads

    def out_of_budget() -> bool:
        return (
            (budget_s is not None and elapsed() >= budget_s)
            or (cpu_budget_s is not None and cpu_used() >= cpu_budget_s)
            or (args.max_steps is not None and step >= args.max_steps)
        )

    def save_resumable() -> None:
        train_state = {
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "generator": generator.get_state(),
            "epoch": epoch,
            "elapsed": elapsed(),
            "cpu": cpu_used(),
        }
        save_checkpoint(
            last, model, config=config, step=step, command=command, train_state=train_state
        )

    running, count, images_seen, t_log = 0.0, 0, 0, time.perf_counter()
    train_loss = float("nan")
    stopped = out_of_budget()
    while epoch < args.epochs and not stopped:
        lr = learning_rate(epoch, args.lr, args.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        epoch_sum, epoch_count = 0.0, 0
        for batch in minibatches(x_train, args.batch_size, shuffle=True, generator=generator):
            x = binarize(batch, generator)  # dynamic binarization: a fresh sample every time
            loss = training_loss(model, x, args.objective, args.k)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += loss.item()
            count += 1
            images_seen += x.shape[0]
            epoch_sum += loss.item()
            epoch_count += 1
            if step % args.log_every == 0:
                now = time.perf_counter()
                logger.log(
                    step=step,
                    epoch=epoch,
                    lr=lr,
                    train_loss=running / count,
                    test_elbo="",
                    images_per_s=images_seen / max(now - t_log, 1e-9),
                    elapsed_s=round(elapsed(), 2),
                )
                running, count, images_seen, t_log = 0.0, 0, 0, now
            if out_of_budget():
                stopped = True
                break
        train_loss = epoch_sum / max(epoch_count, 1)
        epoch += 1
        with evaluating(model):
            monitor = elbo(model, x_monitor, k=1).mean().item()
        logger.log(
            step=step,
            epoch=epoch,
            lr=lr,
            train_loss=train_loss,
            test_elbo=monitor,
            images_per_s="",
            elapsed_s=round(elapsed(), 2),
        )
        if not args.quiet:
            print(
                f"epoch {epoch} step {step} lr {lr:.2e} loss {train_loss:.2f} "
                f"test ELBO (first {len(x_monitor)}) {monitor:.2f} [{elapsed():.0f} s]",
                flush=True,
            )
        if epoch % args.save_every == 0 or stopped or epoch >= args.epochs:
            save_resumable()

    final = args.out / f"{args.name}.safetensors"
    metrics = {
        "epochs": epoch,
        "steps": step,
        "train_loss_last_epoch": train_loss,
        "train_wall_s": round(elapsed(), 1),
        "train_cpu_s": round(cpu_used(), 1),
        "threads": args.threads,
    }
    save_checkpoint(final, model, config=config, step=step, metrics=metrics, command=command)
    if not args.quiet:
        print(f"wrote {final} after {epoch} epochs, {step} steps, {elapsed():.0f} s")
    return final


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = "python -m vae.train " + shlex.join(argv)
    try:
        train(args, command)
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["burda_stage", "learning_rate", "main", "parse_args", "train"]
