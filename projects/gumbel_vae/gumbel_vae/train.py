"""Train the categorical VAE on dynamically binarized MNIST with the Gumbel-softmax estimator.

    python -m gumbel_vae.train --cpu-minutes 15 --out runs/gumbel_vae \
        --ship checkpoints/gumbel_vae.safetensors
    python -m gumbel_vae.train --estimator st ...          # straight-through Gumbel-softmax
    python -m gumbel_vae.train --anneal-rate 0 --tau0 1 ... # a fixed temperature
    python -m gumbel_vae.train ... --resume                 # same options: continues exactly

Origin: written for dgm-course (MIT licence).

A plain loop: draw a minibatch of the 60k training images, binarize it afresh (dynamic
binarization, as in the authors' code), set the temperature tau of this step from Jang et al.'s
schedule tau = max(tau_min, tau0 exp(-r t)), updated every N steps (model.temperature), and take
one Adam step on minus the relaxed ELBO (model.py Eq. 4) with the Gumbel-softmax sample (Jang
Eq. 2) or its straight-through variant. After every epoch, the IWAE bound with ``--eval-k`` exact
samples on the first ``--eval-n`` fixed-binarized test images is logged (a cheap monitor; the
evaluate command gives the reported numbers). Run folder, saves, exact resume and budgets:
``shared_utils.runs``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared_utils.data import DATASETS, dataset_tensors, evaluation_inputs, model_inputs
from shared_utils.runs import Run, RunConfig, cli, flag
from shared_utils.training import adam

from .evaluate import evaluate
from .model import DATASET, Model, ModelConfig, temperature

# Jang et al. (Sec. 4.2): tau = max(0.5, exp(-r t)) updated every N steps, r in {1e-5, 1e-4},
# N in {500, 1000}. With our budget (about 25,000 steps) r = 1e-4 reaches tau_min at step 7,000.
TAU0 = 1.0  # initial temperature
TAU_MIN = 0.5  # the schedule's floor
ANNEAL_RATE = 1e-4  # r
ANNEAL_EVERY = 1000  # N


@dataclass
class TrainConfig(ModelConfig, RunConfig):  # every field is a flag: batch_size -> --batch-size
    dataset: str = flag(DATASET, "training and test images", choices=tuple(DATASETS))
    estimator: str = flag(
        "gumbel",
        "gumbel: the relaxed sample y (Jang Eq. 2) in the decoder; st: straight-through "
        "(forward the one-hot argmax, backward y's gradient)",
        choices=("gumbel", "st"),
    )
    tau0: float = flag(TAU0, "initial temperature tau0")
    tau_min: float = flag(TAU_MIN, "lowest temperature of the schedule")
    anneal_rate: float = flag(ANNEAL_RATE, "r of tau = max(tau_min, tau0 exp(-r t)); 0: fixed")
    anneal_every: int = flag(ANNEAL_EVERY, "N: tau is updated every N steps")
    batch_size: int = flag(100, "images per step (authors' code: 100)")
    lr: float = flag(1e-3, "Adam learning rate")
    epochs: int = flag(500, "stop after this many epochs (the CPU budget usually stops first)")
    eval_k: int = flag(10, "importance samples of the end-of-epoch test NLL monitor")
    out: Path = flag(Path("runs/gumbel_vae"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``Model``: the fields of ``ModelConfig`` in ``cfg``."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelConfig)}


def step_temperature(cfg: TrainConfig, steps_done: int) -> float:
    """The temperature of the step after ``steps_done`` optimizer steps (Jang's schedule)."""
    return temperature(steps_done, cfg.tau0, cfg.tau_min, cfg.anneal_rate, cfg.anneal_every)


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    run = Run(cfg)
    images, labels = dataset_tensors(cfg.dataset, "train")  # uint8 [N, 1, 28, 28], int64 [N]
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = evaluation_inputs(cfg.dataset, "test")
    x_test, y_test = x_test[: cfg.eval_n], y_test[: cfg.eval_n]

    model = Model(**model_kwargs(cfg))
    model.init_output_bias(images.float().mean(0) / 255.0)
    model.to(run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    run.start(model, model.config(), optimizer=optimizer)  # on --resume: restores all of it

    for batch in run.batches(images, batch_size=cfg.batch_size):
        x = model_inputs(cfg.dataset, batch, run.generator).to(run.device)
        tau = step_temperature(cfg, run.step - 1)  # run.step counts the current step
        loss = model.loss(x, tau=tau, hard=cfg.estimator == "st")  # minus Eq. 4 (model.py)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(loss=loss.item(), tau=tau)
        if run.epoch_done and cfg.eval_n:
            metrics = evaluate(model, x_test, y_test, cfg.batch_size, k=cfg.eval_k)
            run.log_eval(**{f"test_{name}": value for name, value in metrics.items()}, tau=tau)
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
