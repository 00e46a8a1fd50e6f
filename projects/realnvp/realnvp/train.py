"""Train RealNVP or NICE by maximum likelihood on MNIST or Fashion-MNIST (dequantized, logit space).

    python -m realnvp.train --model realnvp --dataset mnist --cpu-minutes 20 --threads 2 \
        --out runs/realnvp_mnist --ship checkpoints/realnvp_mnist.safetensors
    python -m realnvp.train --model nice --dataset mnist --cpu-minutes 10 --threads 2 \
        --out runs/nice_mnist --ship checkpoints/nice_mnist.safetensors
    python -m realnvp.train ... --resume          # same options: continues exactly where it stopped

One step: draw a minibatch of 8-bit training images, dequantize it with fresh uniform noise
(``x = (pixel + u) / 256``, u from the run's generator), and take one Adam step on the mean NLL of
the 8-bit images in bits/dim (``Flow.bits_per_dim``: the flow's exact log-likelihood in logit
space, RealNVP Eq. 3, plus the logit transform's Jacobian and the 1/256 scaling; constants do not
change the gradient, and with them the training loss reads as the test metric). The paper's
optimizer: Adam (lr 1e-3) with an L2 penalty of 5e-5 on the weights (RealNVP Sec. 4.1; here
Adam's ``weight_decay``). The gradient's norm is clipped to ``--grad-clip``.

After every epoch the bits/dim of the first ``--eval-n`` test images, each dequantized with one
fixed noise draw (seed 0: the noise of ``python -m realnvp.evaluate``), goes into eval.csv. A
non-finite loss or gradient stops the run with an error before the optimizer step, so nothing of
it is saved and ``--out``'s last save stays good.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from realnvp.model import KINDS, PRIORS, Flow, dataset_bits_per_dim
from realnvp.preprocess import DEFAULT_ALPHA, dequantization_noise, dequantize
from shared_utils.data import dataset_tensors
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam

DATASETS = ("mnist", "fashion-mnist")
BACKENDS = ("eager", "channels_last", "compile")
EVAL_NOISE_SEED = 0  # the dequantization noise of the test images (evaluate.py's default --seed)


@dataclass
class TrainConfig(RunConfig):
    model: str = flag(
        "realnvp", "realnvp: affine couplings, multi-scale; nice: additive", choices=KINDS
    )
    dataset: str = flag("mnist", "training images (8-bit, 1x28x28)", choices=DATASETS)
    scales: int = flag(3, "realnvp: scales of the multi-scale architecture (28 -> 14 -> 7)")
    channels: int = flag(32, "realnvp: feature maps of every s/t ResNet")
    blocks: int = flag(2, "realnvp: residual blocks of every s/t ResNet")
    nice_couplings: int = flag(4, "nice: additive coupling layers (paper: 4)")
    nice_hidden: int = flag(256, "nice: units of each hidden layer of m (paper: 1000)")
    nice_layers: int = flag(5, "nice: hidden layers of each coupling's MLP m (paper: 5)")
    prior: str = flag(
        "gaussian", "prior on the latents (NICE's MNIST model: logistic)", choices=PRIORS
    )
    alpha: float = flag(DEFAULT_ALPHA, "logit transform y = logit(alpha + (1 - 2 alpha) x)")
    batch_size: int = flag(64, "images per step (paper: 64)")
    lr: float = flag(1e-3, "Adam learning rate (paper: 1e-3)")
    weight_decay: float = flag(
        5e-5, "L2 penalty on the weights, as Adam's weight_decay (paper: 5e-5)"
    )
    grad_clip: float = flag(100.0, "clip the gradient's norm to this (0: no clipping)")
    backend: str = flag(
        "channels_last",
        "execution of the step: channels_last memory (fastest without a compile wait, bench.py), "
        "eager (the shipped checkpoints' runs), torch.compile",
        choices=BACKENDS,
    )
    epochs: int = flag(20, "stop after this many epochs")
    out: Path = flag(Path("runs/realnvp"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict:
    """The :class:`Flow` arguments of ``cfg``."""
    return {
        "kind": cfg.model,
        "scales": cfg.scales,
        "channels": cfg.channels,
        "blocks": cfg.blocks,
        "nice_couplings": cfg.nice_couplings,
        "nice_hidden": cfg.nice_hidden,
        "nice_layers": cfg.nice_layers,
        "prior": cfg.prior,
        "alpha": cfg.alpha,
    }


def _validate(cfg: TrainConfig) -> None:
    positive = ("scales", "channels", "blocks", "nice_couplings", "nice_hidden", "nice_layers")
    bad = [name for name in positive if getattr(cfg, name) < 1]
    if bad:
        raise RunError(f"--{bad[0].replace('_', '-')} must be a positive integer")
    if not 0.0 < cfg.alpha < 0.5:
        raise RunError(f"--alpha must be in (0, 0.5), not {cfg.alpha}")
    if cfg.grad_clip < 0 or cfg.weight_decay < 0:
        raise RunError("--grad-clip and --weight-decay must be >= 0")
    if cfg.model == "realnvp" and 28 % 2 ** (cfg.scales - 1):
        raise RunError(
            f"--scales {cfg.scales}: 28x28 images can be squeezed twice at most (--scales <= 3)"
        )


def build(cfg: TrainConfig, device: torch.device | str = "cpu") -> Flow:
    """The flow of ``cfg`` (seeded by the caller) on ``device``, in ``--backend``'s layout."""
    model = Flow(**model_kwargs(cfg)).to(device)
    if cfg.backend == "channels_last" and cfg.model == "realnvp":
        model.to(memory_format=torch.channels_last)
    return model


def step_function(cfg: TrainConfig, model: Flow) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the training step calls on a dequantized batch: ``model.bits_per_dim``, compiled with
    ``--backend compile``."""
    if cfg.backend == "compile":
        return torch.compile(model.bits_per_dim)
    return model.bits_per_dim


def to_backend(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A batch in the memory layout of ``--backend``."""
    if cfg.backend == "channels_last" and cfg.model == "realnvp":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def training_loss(
    bits_per_dim: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """The objective: mean NLL in bits/dim of the batch (maximum likelihood, RealNVP Eq. 3)."""
    return bits_per_dim(x).mean()


def check_divergence(run: Run, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
    """Raise RunError, before the optimizer step and the run kit's save of this step, if the loss
    or the gradient is not finite."""
    values = {"loss": loss, "grad_norm": grad_norm}
    bad = [f"{name} = {value.item()}" for name, value in values.items() if not value.isfinite()]
    if bad:
        raise RunError(
            f"training diverged at step {run.step}: {', '.join(bad)}; nothing of it was saved, "
            f"{run.out}/last.safetensors keeps the last save (every --save-every steps). Start "
            "a new --out with other options (e.g. a lower --lr or --grad-clip, another --seed)."
        )


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    _validate(cfg)
    run = Run(cfg)
    images, _ = dataset_tensors(cfg.dataset, "train")  # uint8 [60000, 1, 28, 28]
    x_train = images[: cfg.limit_train]
    test_images, _ = dataset_tensors(cfg.dataset, "test")
    x_monitor = test_images[: cfg.eval_n]
    noise_monitor = dequantization_noise(x_monitor.shape[0], x_monitor.shape[1:], EVAL_NOISE_SEED)

    model = build(cfg, run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.start(model, model.config(), optimizer=optimizer)
    bits_per_dim = step_function(cfg, model)
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf

    for pixels in run.batches(x_train, batch_size=cfg.batch_size):
        x = to_backend(dequantize(pixels, run.generator).to(run.device), cfg)
        loss = training_loss(bits_per_dim, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        check_divergence(run, loss.detach(), grad_norm)
        optimizer.step()
        run.log(loss_bpd=loss.item(), grad_norm=grad_norm.item())
        if run.epoch_done and cfg.eval_n:
            bpd = dataset_bits_per_dim(model, x_monitor, noise_monitor, cfg.batch_size)
            run.log_eval(test_bpd=bpd.mean().item())
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
