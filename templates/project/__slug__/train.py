"""Maximum-likelihood training (minimise eq. 2 of model.py) on dynamically binarized MNIST.

Origin: written for dgm-course (MIT licence).

A plain loop a reader can follow: draw a minibatch, binarize it afresh, take an Adam step on the
mean NLL. A resumable checkpoint (weights, optimizer, RNG) is written atomically every
``--save-every`` steps and at the end; ``--resume`` continues from it bit for bit.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from shared_utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from shared_utils.data import binarize, mnist_tensors
from shared_utils.training import is_smoke, progress, seed_everything

from .model import IndependentBernoulli


def train_steps(
    model: IndependentBernoulli,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    start_step: int = 0,
    show_progress: bool = False,
) -> list[dict[str, float]]:
    """Run ``steps`` Adam steps on uint8 ``images`` [N, 28, 28]; return rows {step, nll}."""
    log = []
    steps_iter = range(start_step + 1, start_step + steps + 1)
    for step in progress(steps_iter, disable=not show_progress):
        idx = torch.randint(images.shape[0], (batch_size,), generator=generator)
        x = binarize(images[idx], generator)  # dynamic binarization: a new sample every time
        loss = model.nll(x).mean()  # eq. 2, averaged over the batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        log.append({"step": float(step), "nll": float(loss.item())})
    return log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=f"python -m {__package__}.train", description=__doc__.splitlines()[0]
    )
    p.add_argument("--steps", type=int, default=2000, help="total training steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/model.safetensors"))
    p.add_argument("--save-every", type=int, default=500, help="checkpoint interval")
    p.add_argument("--resume", action="store_true", help="continue from --out")
    p.add_argument("--ship", type=Path, help="also save weights only here (checkpoints/)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, checkpointing as it goes; returns the exit status."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    model = IndependentBernoulli()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    config = {"model": model.config(), "lr": args.lr, "batch_size": args.batch_size}
    step = 0
    if args.resume:
        try:
            ckpt = load_checkpoint(args.out, model, load_train_state=True)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        optimizer.load_state_dict(ckpt.train_state["optimizer"])
        generator.set_state(ckpt.train_state["generator"])
        step = ckpt.step
    images, _ = mnist_tensors("train-50k")
    if is_smoke():
        images = images[:2000]
    command = "python -m " + __package__ + ".train " + shlex.join(argv or sys.argv[1:])
    while step < args.steps:
        chunk = min(args.save_every, args.steps - step)
        log = train_steps(model, optimizer, images, chunk, args.batch_size, generator, step)
        step += chunk
        print(f"step {step}: train NLL {log[-1]['nll']:.2f} nats", flush=True)
        state = {"optimizer": optimizer.state_dict(), "generator": generator.get_state()}
        save_checkpoint(
            args.out, model, config=config, step=step, command=command, train_state=state
        )
    if args.ship:
        save_checkpoint(args.ship, model, config=config, step=step, command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
