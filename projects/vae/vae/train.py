"""Train a VAE (ELBO) or an IWAE (bound L_k) on dynamically binarized MNIST.

    python -m vae.train --objective vae --k 1 --minutes 30 --out runs/vae_k1 \
        --ship checkpoints/vae_k1.safetensors
    python -m vae.train --objective iwae --k 50 --minutes 35 --out runs/iwae_k50
    python -m vae.train ... --resume          # same options: continues exactly where it stopped

A plain loop: draw a minibatch of the 60k training images, binarize it afresh (dynamic
binarization), take one Adam step on minus the bound. The learning rate follows either a constant
or the paper's schedule (Burda et al. Sec. 5: lr = 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7,
Adam eps = 1e-4), cut short by the epoch or time budget. After every epoch the ELBO of the first
``--eval-n`` test images is logged. Run folder, saves, resume and budgets: ``shared_utils.runs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.runs import Run, RunConfig, cli, flag
from shared_utils.training import adam, evaluating
from vae.model import VAE
from vae.objectives import elbo, training_loss


@dataclass
class TrainConfig(RunConfig):
    objective: str = flag(
        "vae", "vae: the ELBO (Eq. 10); iwae: the bound L_k (Eq. 8)", choices=("vae", "iwae")
    )
    k: int = flag(1, "samples per example (k of L_k)")
    latent_dim: int = flag(50, "dimension of z")
    hidden_dim: int = flag(200, "units of each of the two tanh layers")
    batch_size: int = flag(100, "paper: 20")
    lr: float = flag(1e-3, "Adam learning rate (the schedule's start)")
    adam_eps: float = flag(1e-4, "Adam epsilon (paper: 1e-4)")
    schedule: str = flag("burda", "learning-rate schedule", choices=("burda", "constant"))
    epochs: int = flag(3280, "paper: 3280 (sum of 3^i, i = 0..7)")
    out: Path = flag(Path("runs/vae"), "run folder")


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


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    run = Run(cfg)
    images, _ = mnist_tensors("train")
    x_train = images[: cfg.limit_train].reshape(-1, 784)  # uint8; binarized batch by batch
    x_monitor = fixed_binarized_mnist("test")[: cfg.eval_n].reshape(-1, 784).to(run.device)

    model = VAE(cfg.latent_dim, cfg.hidden_dim)
    model.init_output_bias(x_train.float().mean(0) / 255.0)
    model.to(run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    run.start(model, model.config(), optimizer=optimizer)

    for batch in run.batches(x_train, batch_size=cfg.batch_size):
        lr = learning_rate(run.epoch, cfg.lr, cfg.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = binarize(batch, run.generator).to(run.device)  # dynamic binarization: a fresh sample
        loss = training_loss(model, x, cfg.objective, cfg.k)  # minus the ELBO or minus L_k
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(train_loss=loss.item(), lr=lr)
        if run.epoch_done and cfg.eval_n:
            with evaluating(model):
                run.log_eval(test_elbo=elbo(model, x_monitor, k=1).mean().item())
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
