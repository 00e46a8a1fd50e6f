"""Train Glow on MNIST or Fashion-MNIST by maximum likelihood (bits/dim of the 8-bit images).

    python -m glow.train --dataset mnist --cpu-minutes 25 --threads 2 --out runs/glow_mnist \
        --ship checkpoints/glow_mnist.safetensors
    python -m glow.train --permutation plain ...      # the 1x1 convolution without LU (Sec. 3.2)
    python -m glow.train --coupling additive ...      # the additive coupling (Sec. 5.1 ablation)
    python -m glow.train ... --resume                 # same options: continues exactly

A plain loop: draw a minibatch of training images, dequantize it with fresh uniform noise from the
run's generator (``glow.model.dequantize``), take one Adam step on its mean bits/dim (the paper's
objective, Sec. 2: maximum likelihood of the dequantized data). Before the very first step of a
run, ActNorm's data-dependent initialisation (Sec. 3.1) runs on that first batch; whether it has
happened is a buffer of the weights, so ``--resume`` never redoes it. As in the official code
(``train.py``: ``lr * min(1, n_processed / n_warmup)``), the learning rate rises linearly from 0 to
``--lr`` over the first ``--warmup`` steps, then stays constant; ``--grad-clip`` optionally clips
the gradient's global norm (off by default; the norm is logged either way). After every epoch (and
every ``--eval-every`` steps) the test bits/dim of the first ``--eval-n`` test images, dequantized
once with a fixed seed, go into eval.csv. A non-finite loss or gradient stops the run with an error
before anything of that step is saved, so the last save in ``--out`` stays good. Run folder,
saves, resume and budgets: ``shared_utils.runs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glow.evaluate import DATASETS, mean_bits_per_dim
from glow.layers import COUPLINGS, PERMUTATIONS
from glow.model import Glow, dequantize
from shared_utils.data import dataset_tensors
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam

BACKENDS = ("eager", "channels_last", "compile")
MODEL_FIELDS = ("levels", "steps", "hidden", "permutation", "coupling")


@dataclass
class TrainConfig(RunConfig):
    dataset: str = flag("mnist", "training and test images", choices=DATASETS)
    levels: int = flag(2, "L: levels of the multi-scale architecture (28x28 allows 1 or 2)")
    steps: int = flag(8, "K: steps of flow per level (paper: 32)")
    hidden: int = flag(64, "channels of the hidden layers of each coupling's NN() (paper: 512)")
    permutation: str = flag(
        "lu",
        "the 1x1 convolution: lu (W = PL(U + diag(s)), Eq. 10) or plain W",
        choices=PERMUTATIONS,
    )
    coupling: str = flag("affine", "coupling layer (Sec. 3.3)", choices=COUPLINGS)
    batch_size: int = flag(64, "images per step")
    lr: float = flag(1e-3, "Adam learning rate after the warm-up (paper: 1e-3)")
    warmup: int = flag(500, "steps of linear learning-rate warm-up from 0 (0: none)")
    grad_clip: float | None = flag(None, "clip the gradient's global L2 norm to this; None: off")
    eval_every: int = flag(0, "also score the --eval-n test images every N steps (0: epoch ends)")
    backend: str = flag(
        "channels_last",
        "execution of the step: channels_last memory (fastest without a compile wait, bench.py), "
        "eager (the shipped checkpoints' runs), torch.compile",
        choices=BACKENDS,
    )
    epochs: int = flag(100, "stop after this many epochs (a budget usually stops the run first)")
    eval_n: int = flag(1000, "test images scored at every epoch end and --eval-every (0: none)")
    out: Path = flag(Path("runs/glow"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``Glow`` given by ``cfg`` (28x28 grey images)."""
    return {name: getattr(cfg, name) for name in MODEL_FIELDS}


def build(cfg: TrainConfig, device: torch.device | str = "cpu") -> Glow:
    """The model of ``cfg`` (its random 1x1 convolutions from the torch RNG) on ``device``, in
    the memory layout of ``--backend``; bad sizes become a RunError."""
    try:
        model = Glow(**model_kwargs(cfg))
    except ValueError as err:
        raise RunError(str(err)) from None
    model.to(device)
    if cfg.backend == "channels_last":
        model.to(memory_format=torch.channels_last)
    return model


def to_backend(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A batch in the memory layout of ``--backend``."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.backend == "channels_last" else x


def loss_function(model: Glow, cfg: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a step calls for the loss: ``model.loss``, compiled with ``--backend compile``."""
    return torch.compile(model.loss) if cfg.backend == "compile" else model.loss


def learning_rate(step: int, lr: float, warmup: int) -> float:
    """lr * min(1, step / warmup) at optimizer step ``step`` (from 1): the linear warm-up."""
    return lr if warmup <= 0 else lr * min(1.0, step / warmup)


def train_step(
    model: Glow,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grad_clip: float | None = None,
) -> tuple[float, float]:
    """One Adam step on the mean bits/dim of the dequantized batch ``x``; returns the loss and
    the gradient's global norm (before clipping)."""
    loss = loss_fn(x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = math.inf if grad_clip is None else grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item(), grad_norm.item()


def _validate(cfg: TrainConfig) -> None:
    if cfg.warmup < 0 or cfg.eval_every < 0:
        raise RunError("--warmup and --eval-every must be >= 0")
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        raise RunError(f"--grad-clip must be positive, not {cfg.grad_clip}")
    if not cfg.lr > 0:
        raise RunError(f"--lr must be positive, not {cfg.lr}")


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    _validate(cfg)
    run = Run(cfg)
    images, _ = dataset_tensors(cfg.dataset, "train")  # uint8 [60000, 1, 28, 28]
    x_train = images[: cfg.limit_train]
    test_images, _ = dataset_tensors(cfg.dataset, "test")
    # the monitored test images, dequantized once (the same noise at every evaluation)
    x_eval = dequantize(test_images[: cfg.eval_n], torch.Generator().manual_seed(cfg.seed))

    model = build(cfg, run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    run.start(model, model.config(), optimizer=optimizer)  # on --resume: restores all of it
    needs_init = not model.initialized  # False on --resume: the buffers say it was done
    loss_fn = loss_function(model, cfg)

    for batch in run.batches(x_train, batch_size=cfg.batch_size):
        x = to_backend(dequantize(batch, run.generator).to(run.device), cfg)
        if needs_init:  # ActNorm's data-dependent initialisation on the first batch (Sec. 3.1)
            model.initialize(x)
            needs_init = False
        lr = learning_rate(run.step, cfg.lr, cfg.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm = train_step(model, optimizer, loss_fn, x, cfg.grad_clip)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise RunError(
                f"training diverged at step {run.step}: loss {loss}, gradient norm {grad_norm}; "
                f"nothing of it was saved, {run.out}/last.safetensors keeps the last save (every "
                "--save-every steps). Start a new --out with other options (e.g. a lower --lr, a "
                "longer --warmup or --grad-clip)."
            )
        run.log(train_bpd=loss, lr=lr, grad_norm=grad_norm)
        at_eval = run.epoch_done or (cfg.eval_every and run.step % cfg.eval_every == 0)
        if cfg.eval_n and at_eval:
            run.log_eval(test_bpd=mean_bits_per_dim(model, x_eval))
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
