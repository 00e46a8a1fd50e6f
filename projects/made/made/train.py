"""Train MADE on binarized MNIST by minimising the exact negative log-likelihood.

    python -m made.train --hidden-sizes 500 500 --direct --num-masks 32 --epochs 75 --minutes 40 \
        --out runs/made_2x500_32masks --ship checkpoints/made_2x500_32masks.safetensors
    python -m made.train ... --resume          # same options: continues exactly where it stopped

A plain loop: each minibatch of the first 50k training images (binarized afresh with
``--binarization dynamic``) installs the next of the ``--num-masks`` masks (connectivity-agnostic
and, with ``--order-agnostic``, order-agnostic training, paper Secs. 4.2-4.3), computes
``-log p(x) = sum_d BCE(x_d, sigm(a_d))`` and takes one Adam step; the learning rate decays along
a cosine to 0 over ``--epochs``. After every epoch the first ``--eval-n`` images of the
fixed-binarized validation set (the last 10k training images) are scored with mask 0, and the
best epoch's weights are kept in ``OUT/best.safetensors`` (early stopping, as in the paper);
``--ship`` gets those. Run folder, saves, exact resume and budgets: ``shared_utils.runs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from made.model import MADE
from shared_utils.checkpoints import load_checkpoint
from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.metrics import dataset_mean
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam, evaluating


@dataclass
class TrainConfig(RunConfig):  # every field is a flag: num_masks -> --num-masks
    hidden_sizes: list[int] = flag([500], "widths of the hidden layers")
    num_masks: int = flag(
        1,
        "connectivity-agnostic training: cycle through this many masks, one per minibatch "
        "(1: a single fixed MADE); the same masks form the test-time ensemble",
    )
    order_agnostic: bool = flag(False, "each mask also draws its own random input ordering")
    direct: bool = flag(False, "direct input-to-output connections")
    mask_seed: int = flag(0, "seed of the masks (stored in the model config)")
    binarization: str = flag(
        "dynamic",
        "dynamic: a fresh Bernoulli sample of every training batch; fixed: the repo's fixed "
        "binarization",
        choices=("dynamic", "fixed"),
    )
    lr: float = flag(1e-3, "Adam learning rate, cosine-decayed to 0 over --epochs")
    batch_size: int = flag(100, "images per step")
    epochs: int = flag(100, "epochs (also the length of the cosine schedule)")
    eval_n: int = flag(10_000, "validation images scored at each epoch's end (0: no early stop)")
    out: Path = flag(Path("runs/made"), "run folder")
    ship: Path | None = flag(None, "at the end, also write the best epoch's weights here")


MODEL_FLAGS = ("hidden_sizes", "num_masks", "order_agnostic", "direct", "mask_seed")  # MADE(...)


def lr_at(step: int, total_steps: int, base_lr: float) -> float:
    """Cosine decay from ``base_lr`` to 0 over ``total_steps`` (``step`` counts from 0)."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def load_data(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images [N, 784] (uint8 for dynamic, {0, 1} floats for fixed binarization) and the
    first ``eval_n`` fixed-binarized validation images."""
    if cfg.binarization == "dynamic":
        x_train = mnist_tensors("train-50k")[0]  # binarized batch by batch
    else:
        x_train = fixed_binarized_mnist("train-50k")
    x_valid = fixed_binarized_mnist("valid-10k")[: cfg.eval_n]
    return x_train[: cfg.limit_train].flatten(1), x_valid.flatten(1)


def validate(model: MADE, x_valid: torch.Tensor) -> float:
    """Exact mean NLL (nats) of ``x_valid`` with mask 0."""
    with evaluating(model):
        previous = model.mask_index
        model.set_mask(0)
        value = dataset_mean(lambda x: -model.log_prob(x), x_valid, batch_size=1000)
        model.set_mask(previous)
    return value


def best_weights(run: Run, path: Path) -> dict[str, torch.Tensor] | None:
    """The weights of the best validated epoch (None: no epoch was validated)."""
    if "best_step" not in run.state:
        return None
    best = load_checkpoint(path)
    if best.step != run.state["best_step"]:
        raise RunError(
            f"{path} holds step {best.step}, but the run's best epoch ended at step "
            f"{run.state['best_step']} (a crash lost the saves between them): resume the run "
            f"past step {best.step}."
        )
    return best.state_dict


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    run = Run(cfg)
    x_train, x_valid = load_data(cfg)
    x_valid = x_valid.to(run.device)
    model = MADE(x_train.shape[1], **{name: getattr(cfg, name) for name in MODEL_FLAGS})
    model.to(run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    run.start(model, model.config(), optimizer=optimizer)  # on --resume: restores all of it
    best_path = run.out / "best.safetensors"

    for batch in run.batches(x_train, batch_size=cfg.batch_size):
        lr = lr_at(run.step - 1, cfg.epochs * run.steps_per_epoch, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = binarize(batch, run.generator) if cfg.binarization == "dynamic" else batch
        model.set_mask((run.step - 1) % cfg.num_masks)  # a new mask for every minibatch
        loss = -model.log_prob(x.to(run.device)).mean()  # exact NLL, nats per image
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(train_nll=loss.item(), lr=lr)
        if run.epoch_done and cfg.eval_n:
            valid_nll = validate(model, x_valid)
            run.log_eval(valid_nll=valid_nll)
            if valid_nll < run.state.get("best_valid_nll", math.inf):  # early stopping
                run.state.update(best_valid_nll=valid_nll, best_epoch=run.epoch + 1)
                run.state.update(best_step=run.step)
                metrics = {"valid_nll_1mask": round(valid_nll, 3), "epoch": run.epoch + 1}
                run.save_weights(best_path, metrics=metrics)
    best = {k: v for k, v in run.state.items() if k != "best_valid_nll"}
    if "best_valid_nll" in run.state:
        best["valid_nll_1mask"] = round(run.state["best_valid_nll"], 3)
    return run.finish(metrics=best, weights=best_weights(run, best_path))


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
