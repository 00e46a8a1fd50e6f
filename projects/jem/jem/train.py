"""Train JEM (or an IGEBM, or the plain classifier) on Fashion-MNIST or MNIST.

    python -m jem.train --objective jem --dataset fashion-mnist --cpu-minutes 12 \
        --out runs/jem_fashion-mnist --ship checkpoints/jem_fashion-mnist.safetensors
    python -m jem.train --objective classifier --cpu-minutes 2 \
        --out runs/clf_fashion-mnist --ship checkpoints/clf_fashion-mnist.safetensors
    python -m jem.train ... --resume       # same options: continues exactly where it stopped

Origin: written for dgm-course (MIT licence).

One step (JEM Algorithm 1): a minibatch (x+, y) of training images in [-1, 1] with Gaussian
noise of standard deviation ``--data-noise``; ``--batch-size`` chains drawn from the replay buffer
(a fraction ``--reinit`` from uniform noise) and run for ``--sgld-steps`` SGLD steps of size
``--sgld-step-size`` with noise ``--sgld-noise`` to give x-, written back into the buffer; one Adam
step on the objective of objective.py (``--objective``: jem = CE + L_gen, igebm = L_gen alone,
classifier = CE alone, which draws no samples). The replay buffer is saved with the run, so
``--resume`` continues exactly.

Divergence (EBM training is known to blow up: the energies of data and samples run apart, or
become NaN) stops the run with a one-line error before that step is saved: a non-finite loss or
energy, or a mean energy of data or samples beyond ``--diverge-energy`` in magnitude. The last
save in ``--out`` (every ``--save-every`` steps) stays good and loadable.

Stabilising choices (README, "Deviations"): no batch normalization, SiLU activations, a linear
learning-rate warm-up (``--warmup``), IGEBM's squared-energy regularisation (``--energy-reg``),
gradient clipping (``--grad-clip``) and SGLD chains clipped to the image range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from shared_utils.data import dataset_tensors
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam, evaluating

from . import objective as obj
from .metrics import auroc
from .model import DATASET, Model, ModelConfig, to_model_range

DATASETS = ("fashion-mnist", "mnist")
OOD = {"fashion-mnist": "mnist", "mnist": "fashion-mnist"}


@dataclass
class TrainConfig(ModelConfig, RunConfig):  # every field is a flag: batch_size -> --batch-size
    dataset: str = flag(DATASET, "training and test images", choices=DATASETS)
    objective: str = flag("jem", "jem, igebm (L_gen alone) or classifier", choices=obj.OBJECTIVES)
    batch_size: int = flag(64, "images per step, and SGLD chains per step (JEM appendix)")
    lr: float = flag(3e-4, "Adam learning rate after the warm-up (JEM appendix: 1e-4)")
    warmup: int = flag(100, "steps of linear learning-rate warm-up")
    grad_clip: float = flag(10.0, "clip the gradient to this norm (0: off)")
    buffer_size: int = flag(obj.JEM_BUFFER_SIZE, "replay buffer size |B|")
    reinit: float = flag(obj.JEM_REINIT, "rho: probability that a chain starts from noise")
    sgld_steps: int = flag(obj.JEM_SGLD_STEPS, "SGLD steps per training step")
    sgld_step_size: float = flag(obj.JEM_SGLD_STEP_SIZE, "alpha: SGLD gradient step")
    sgld_noise: float = flag(obj.JEM_SGLD_NOISE, "sigma: SGLD noise standard deviation")
    data_noise: float = flag(obj.JEM_DATA_NOISE, "noise std added to training images")
    energy_reg: float = flag(0.1, "weight of the squared-energy term (IGEBM: 1)")
    diverge_energy: float = flag(1e3, "stop when a mean energy exceeds this in magnitude")
    eval_every: int = flag(200, "steps between evaluations on --eval-n test images (0: none)")
    epochs: int = flag(100, "stop after this many epochs (a budget usually stops first)")
    save_every: int = flag(100, "optimizer steps between resumable saves (and one at the stop)")
    log_every: int = flag(10, "optimizer steps averaged into one row of log.csv")
    eval_n: int = flag(1000, "test images (and as many OOD images) of each evaluation")
    out: Path = flag(Path("runs/jem"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``Model``: the fields of ``ModelConfig`` in ``cfg``."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelConfig)}


def _validate(cfg: TrainConfig) -> None:
    if cfg.objective in ("jem", "classifier") and cfg.num_classes < 2:
        raise RunError(f"--objective {cfg.objective} needs --num-classes >= 2 (the labels)")
    if not 0.0 <= cfg.reinit <= 1.0:
        raise RunError(f"--reinit is a probability in [0, 1], not {cfg.reinit}")
    if cfg.buffer_size < 1 or cfg.sgld_steps < 0 or cfg.sgld_step_size < 0 or cfg.sgld_noise < 0:
        raise RunError("--buffer-size must be positive; the SGLD settings non-negative")
    if cfg.lr <= 0 or cfg.warmup < 0 or cfg.grad_clip < 0 or cfg.energy_reg < 0:
        raise RunError("--lr must be positive; --warmup, --grad-clip, --energy-reg non-negative")
    if not cfg.diverge_energy > 0:
        raise RunError("--diverge-energy must be positive")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``--lr`` over ``--warmup`` steps, then constant (JEM appendix warms up
    over 1000 iterations)."""
    return cfg.lr if cfg.warmup == 0 else cfg.lr * min(1.0, step / cfg.warmup)


def check_divergence(step: int, stats: dict[str, float], threshold: float, out: Path) -> None:
    """Raise RunError (before the run kit saves this step) if a logged value is not finite or
    the mean energy of the data or of the samples is beyond ``threshold`` in magnitude."""
    bad = [f"{k} = {v:.4g}" for k, v in stats.items() if not math.isfinite(v)]
    bad += [
        f"|{k}| = {abs(stats[k]):.4g} > {threshold:g}"
        for k in ("e_data", "e_samples")
        if k in stats and math.isfinite(stats[k]) and abs(stats[k]) > threshold
    ]
    if bad:
        raise RunError(
            f"training diverged at step {step}: {', '.join(bad)}; this step was not saved and "
            f"{out}/last.safetensors keeps the last good save (every --save-every steps). Start "
            "a new --out with a lower --lr, a larger --energy-reg or another --seed."
        )


@torch.no_grad()
def evaluate_subset(
    model: Model, x_in: torch.Tensor, y_in: torch.Tensor, x_ood: torch.Tensor, chunk: int = 500
) -> dict[str, float]:
    """Accuracy on ``x_in``, mean energies of ``x_in`` and ``x_ood`` and the AUROC of
    log p(x) = LogSumExp f(x) separating them (images in [-1, 1])."""
    logits_in = torch.cat([model(x_in[i : i + chunk]) for i in range(0, len(x_in), chunk)])
    logits_ood = torch.cat([model(x_ood[i : i + chunk]) for i in range(0, len(x_ood), chunk)])
    lp_in, lp_ood = logits_in.logsumexp(1), logits_ood.logsumexp(1)
    return {
        "test_acc": (logits_in.argmax(1) == y_in).float().mean().item(),
        "test_e_data": -lp_in.mean().item(),
        "test_e_ood": -lp_ood.mean().item(),
        "auroc_log_px": auroc(lp_in, lp_ood),
    }


def train_step(
    model: Model,
    optimizer: torch.optim.Optimizer,
    buffer: obj.ReplayBuffer,
    x01: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    cfg: TrainConfig,
    lr: float,
) -> dict[str, float]:
    """One step of JEM Algorithm 1 (or of the plain classifier / IGEBM); returns the logs."""
    device = next(model.parameters()).device
    noise = torch.randn(x01.shape, generator=generator) * cfg.data_noise
    x = (to_model_range(x01) + noise).to(device)  # x+ in [-1, 1] plus JEM's data noise
    x_neg = None
    if cfg.objective != "classifier":
        with evaluating(model):  # x- by SGLD from the buffer (sgld.py), no parameter gradients
            x_neg = obj.draw_negatives(
                model,
                buffer,
                x.shape[0],
                generator,
                cfg.sgld_steps,
                cfg.sgld_step_size,
                cfg.sgld_noise,
            )
    loss, stats = obj.hybrid_loss(
        model, x, y.to(device), x_neg, cfg.energy_reg, cfg.objective
    )  # objective.py: CE + L_gen (JEM Eq. 9)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        stats["grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        )
    optimizer.step()
    return stats


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    _validate(cfg)
    run = Run(cfg)
    images, labels = dataset_tensors(cfg.dataset, "train")  # uint8 [N, 1, 28, 28], int64 [N]
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = dataset_tensors(cfg.dataset, "test")
    x_ood, _ = dataset_tensors(OOD[cfg.dataset], "test")
    x_test = to_model_range(x_test[: cfg.eval_n].float() / 255.0).to(run.device)
    y_test = y_test[: cfg.eval_n].to(run.device)
    x_ood = to_model_range(x_ood[: cfg.eval_n].float() / 255.0).to(run.device)

    model = Model(**model_kwargs(cfg)).to(run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    buffer_size = cfg.buffer_size if cfg.objective != "classifier" else 1
    buffer = obj.new_buffer(buffer_size, cfg.reinit, run.generator)
    run.start(model, model.config(), optimizer=optimizer, buffer=buffer)  # --resume: all of it

    for batch, y in run.batches(images, labels, batch_size=cfg.batch_size, drop_last=True):
        lr = learning_rate(run.step, cfg)
        stats = train_step(
            model, optimizer, buffer, batch.float() / 255.0, y, run.generator, cfg, lr
        )
        check_divergence(run.step, stats, cfg.diverge_energy, run.out)
        run.log(**stats, lr=lr)
        if cfg.eval_n and cfg.eval_every and run.step % cfg.eval_every == 0:
            with evaluating(model):
                run.log_eval(**evaluate_subset(model, x_test, y_test, x_ood))
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
