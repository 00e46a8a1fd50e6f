"""Train MADE on binarized MNIST by minimising the exact negative log-likelihood.

Each minibatch: pick the next mask (connectivity-agnostic / order-agnostic training cycle through
``--num-masks`` masks, one per minibatch, paper Sec. 4.2-4.3), compute
``-log p(x) = sum_d BCE(x_d, sigm(a_d))`` and take an Adam step. After every epoch the model is
scored on the fixed-binarized validation set (last 10k training images, mask 0) and the best epoch
is kept (early stopping, as in the paper). A resumable checkpoint (weights + optimizer + RNG states)
is written atomically after every epoch; ``--resume`` continues from it.

Example (the shipped model):
    python -m made.train --hidden-sizes 500 --num-masks 32 --minutes 35 --epochs 150 \
        --out runs/made_1x500_32masks --ship checkpoints/made_1x500_32masks.safetensors
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from made.model import MADE, nll_nats
from shared_utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from shared_utils.data import DataError, binarize, fixed_binarized_mnist, minibatches, mnist_tensors
from shared_utils.metrics import dataset_mean
from shared_utils.training import CSVLogger, TimeBudget, evaluating, progress, seed_everything

# Options that must match when a run is resumed (they define the model or the data).
MODEL_KEYS = ("hidden_sizes", "num_masks", "order_agnostic", "direct", "mask_seed")
# --epochs may grow on resume (the cosine schedule then stretches to the new length).
RUN_KEYS = (*MODEL_KEYS, "binarization", "batch_size", "lr", "seed", "limit_train")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m made.train",
        description="Train MADE (Germain et al., 2015) on binarized MNIST: exact NLL, Adam.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[500], help="hidden widths")
    p.add_argument(
        "--num-masks",
        type=int,
        default=1,
        help="connectivity-agnostic training: cycle through this many masks, one per minibatch "
        "(1 = a single fixed MADE); the same masks form the test-time ensemble",
    )
    p.add_argument(
        "--order-agnostic",
        action="store_true",
        help="each mask also draws its own random input ordering (order-agnostic training)",
    )
    p.add_argument("--direct", action="store_true", help="direct input-to-output connections")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of the masks (kept in config)")
    p.add_argument(
        "--binarization",
        choices=["dynamic", "fixed"],
        default="dynamic",
        help="dynamic: a fresh Bernoulli sample of every training batch; fixed: the repo's "
        "fixed binarization",
    )
    p.add_argument("--epochs", type=int, default=100, help="epochs (sets the cosine lr schedule)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (whole run)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine-decayed)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of data order and binarization")
    p.add_argument("--limit-train", type=int, default=None, help="use only N training images")
    p.add_argument("--limit-valid", type=int, default=None, help="use only N validation images")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--log-every", type=int, default=100, help="steps between CSV log rows")
    p.add_argument("--out", type=Path, default=Path("runs/made"), help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument(
        "--ship",
        type=Path,
        default=None,
        help="at the end, also write the best-validation weights here (no training state)",
    )
    return p


def lr_at(step: int, total_steps: int, base_lr: float) -> float:
    """Cosine decay from ``base_lr`` to 0 over ``total_steps``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images (uint8 for dynamic, {0,1} float for fixed) and fixed-binarized validation."""
    if args.binarization == "dynamic":
        train, _ = mnist_tensors("train-50k")
        train = train.reshape(train.shape[0], -1)
    else:
        train = fixed_binarized_mnist("train-50k").reshape(50_000, -1)
    valid = fixed_binarized_mnist("valid-10k").reshape(10_000, -1)
    if args.limit_train:
        train = train[: args.limit_train]
    if args.limit_valid:
        valid = valid[: args.limit_valid]
    return train, valid


def validate(model: MADE, valid: torch.Tensor) -> float:
    """Exact NLL (nats) of the validation set with mask 0."""
    with evaluating(model):
        previous = model.mask_index
        model.set_mask(0)
        value = dataset_mean(lambda x: -model.log_prob(x), valid, batch_size=1000)
        model.set_mask(previous)
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m made.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    run_config = {k: getattr(args, k) for k in RUN_KEYS}
    run_config["epochs"] = args.epochs
    last_path, best_path = args.out / "last.safetensors", args.out / "best.safetensors"

    try:
        train, valid = load_data(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    gen = seed_everything(args.seed)
    model = MADE(
        num_inputs=train.shape[1],
        hidden_sizes=args.hidden_sizes,
        num_masks=args.num_masks,
        order_agnostic=args.order_agnostic,
        direct=args.direct,
        mask_seed=args.mask_seed,
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(train.shape[0] / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    step, epoch, best_valid, best_epoch, elapsed_before = 0, 0, float("inf"), -1, 0.0

    if args.resume:
        try:
            ckpt = load_checkpoint(last_path, load_train_state=True)
        except CheckpointError as err:
            print(f"error: cannot resume: {err}", file=sys.stderr)
            return 1
        saved = ckpt.config.get("run", {})
        changed = {
            k: (saved.get(k), run_config[k]) for k in RUN_KEYS if saved.get(k) != run_config[k]
        }
        if changed:
            print(
                f"error: cannot resume {last_path}: options differ from the saved run "
                f"(saved, given): {changed}. Use the same options or a new --out.",
                file=sys.stderr,
            )
            return 1
        model.load_state_dict(ckpt.state_dict)
        ts = ckpt.train_state
        opt.load_state_dict(ts["optimizer"])
        torch.set_rng_state(ts["torch_rng"])
        gen.set_state(ts["data_rng"])
        step, epoch = ckpt.step, int(ts["epoch"])
        best_valid, best_epoch = float(ts["best_valid"]), int(ts["best_epoch"])
        elapsed_before = float(ts["elapsed_s"])
        print(f"resumed {last_path} at epoch {epoch}, step {step}")

    config = {**model.config(), "run": run_config}
    logger = CSVLogger(args.out / "log.csv", resume_step=step if args.resume else None)
    budget = TimeBudget(None if args.minutes is None else args.minutes - elapsed_before / 60.0)
    model.train()
    bar = progress(total=total_steps, initial=step, desc="made", unit="step")
    stop_reason = "epochs done"
    while epoch < args.epochs:
        if budget.exhausted():
            stop_reason = "time budget used up"
            break
        t0, seen, running, count = time.perf_counter(), 0, 0.0, 0
        for batch in minibatches(train, args.batch_size, shuffle=True, generator=gen):
            if args.binarization == "dynamic":
                batch = binarize(batch, generator=gen)  # fresh Bernoulli sample every time
            # connectivity-/order-agnostic training: a new mask for every minibatch
            model.set_mask(step % args.num_masks)
            loss = -model.log_prob(batch).mean()  # exact NLL in nats per image
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, args.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += batch.shape[0]
            running += float(loss.detach()) * batch.shape[0]
            count += batch.shape[0]
            bar.update(1)
            if step % args.log_every == 0:
                logger.log(
                    step=step,
                    epoch=epoch + seen / train.shape[0],
                    train_nll=running / count,
                    valid_nll="",
                    lr=opt.param_groups[0]["lr"],
                    elapsed_s=round(elapsed_before + budget.elapsed(), 2),
                )
                running, count = 0.0, 0
        epoch += 1
        images_per_s = seen / (time.perf_counter() - t0)
        valid_nll = validate(model, valid)
        if valid_nll < best_valid:
            best_valid, best_epoch = valid_nll, epoch
            save_checkpoint(
                best_path,
                model,
                config=config,
                step=step,
                metrics={"valid_nll_1mask": round(valid_nll, 3), "epoch": epoch},
                command=command,
            )
        elapsed = elapsed_before + budget.elapsed()
        logger.log(
            step=step,
            epoch=epoch,
            train_nll=running / count if count else "",
            valid_nll=valid_nll,
            lr=opt.param_groups[0]["lr"],
            elapsed_s=round(elapsed, 2),
        )
        bar.write(
            f"epoch {epoch}: valid NLL (mask 0) {valid_nll:.2f} nats, best {best_valid:.2f} "
            f"(epoch {best_epoch}), {images_per_s:.0f} images/s, {elapsed / 60:.1f} min"
        )
        save_checkpoint(
            last_path,
            model,
            config=config,
            step=step,
            metrics={"valid_nll_1mask": round(valid_nll, 3), "epoch": epoch},
            command=command,
            train_state={
                "optimizer": opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_rng": gen.get_state(),
                "epoch": epoch,
                "best_valid": best_valid,
                "best_epoch": best_epoch,
                "elapsed_s": elapsed,
            },
        )
    bar.close()
    total = elapsed_before + budget.elapsed()
    print(
        f"stopped ({stop_reason}) after {epoch} epochs, {step} steps, {total / 60:.1f} min; "
        f"best valid NLL {best_valid:.2f} at epoch {best_epoch}"
    )
    if args.ship is not None:
        if not best_path.exists():
            print("error: no epoch finished, nothing to ship", file=sys.stderr)
            return 1
        best = load_checkpoint(best_path)
        save_checkpoint(
            args.ship,
            best.state_dict,
            config=best.config,
            step=best.step,
            metrics={
                **best.metrics,
                "epochs_run": epoch,
                "train_minutes": round(total / 60, 1),
                # best validation NLL again, through nll_nats so a non-finite value fails here
                "nll_check": nll_nats(torch.tensor([-best_valid])),
            },
            command=command,
        )
        print(f"shipped {args.ship} (best epoch {best_epoch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
