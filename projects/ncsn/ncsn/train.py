"""Train a noise conditional score network by denoising score matching (Eq. 6) with Adam.

    python -m ncsn.train --dataset fashion-mnist --cpu-minutes 30 --threads 1 --autocast bf16 \
        --out runs/ncsn_fashion-mnist --ship checkpoints/ncsn_fashion-mnist.safetensors
    python -m ncsn.train ... --resume       # same options: continues exactly where it stopped

Origin: written for dgm-course (MIT licence).

A plain loop: draw a minibatch of training images in [0, 1], take one Adam step on
``model.loss`` (Eq. 6: one noise level and one Gaussian perturbation per image, model.py); after
every epoch, log the test DSM loss on the first ``--eval-n`` test images. Run folder, saves,
exact resume and budgets: ``shared_utils.runs``. The model's hyperparameters (``ModelConfig`` in
model.py, the sampler's eps and T included) are options too. The paper trains with Adam, learning
rate 0.001, batch size 128 (App. B.1), the defaults here; ``--autocast bf16`` runs the step in
bfloat16 mixed precision (about 2x faster on CPUs with AMX).

For the paper: set its batch size, learning rate and epochs as the defaults below. A model trained
by one optimizer on ``model.loss`` needs nothing else here. Several optimizers (a GAN's generator
and discriminator steps), a schedule or an EMA of the weights extend the loop: build them after
the model, pass every one of them to ``run.start`` (``run.start(model, model.config(),
g_opt=g_opt, d_opt=d_opt, ema=ema)``) so that ``--resume`` restores them, draw all randomness from
``run.generator`` or the torch RNG, and ship EMA weights with
``run.finish(weights=ema.state_dict())``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from shared_utils.data import dataset_tensors, evaluation_inputs, model_inputs
from shared_utils.runs import Run, RunConfig, cli, flag
from shared_utils.training import adam

from .evaluate import evaluate
from .model import DATASET, Model, ModelConfig

DATASETS = ("fashion-mnist", "mnist")


@dataclass
class TrainConfig(ModelConfig, RunConfig):  # every field is a flag: batch_size -> --batch-size
    dataset: str = flag(DATASET, "training and test images", choices=DATASETS)
    batch_size: int = flag(128, "images per step (paper: 128)")
    lr: float = flag(1e-3, "Adam learning rate (paper: 0.001)")
    autocast: str = flag("none", "bf16: mixed precision for the step", choices=("none", "bf16"))
    out: Path = flag(Path("runs/ncsn"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``Model``: the fields of ``ModelConfig`` in ``cfg``."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelConfig)}


def autocast(cfg: TrainConfig, device) -> contextlib.AbstractContextManager:
    """The mixed-precision context of ``--autocast`` on ``device``."""
    if cfg.autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    run = Run(cfg)
    images, labels = dataset_tensors(cfg.dataset, "train")  # uint8 [N, 1, 28, 28], int64 [N]
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = evaluation_inputs(cfg.dataset, "test")
    x_test, y_test = x_test[: cfg.eval_n], y_test[: cfg.eval_n]

    model = Model(**model_kwargs(cfg)).to(run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    run.start(model, model.config(), optimizer=optimizer)  # on --resume: restores all of it

    for batch, y in run.batches(images, labels, batch_size=cfg.batch_size):
        x = model_inputs(cfg.dataset, batch, run.generator).to(run.device)
        with autocast(cfg, run.device):
            loss = model.loss(x, y.to(run.device))  # Eq. 6 (model.py)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(loss=loss.item())
        if run.epoch_done and cfg.eval_n:
            metrics = evaluate(model, x_test, y_test, cfg.batch_size)
            run.log_eval(**{f"test_{name}": value for name, value in metrics.items()})
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
