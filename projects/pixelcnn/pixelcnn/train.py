"""Train a PixelCNN or (class-conditional) Gated PixelCNN on binarized MNIST by maximum likelihood.

    python -m pixelcnn.train --n-classes 10 --minutes 50 --epochs 20 --out runs/gated_cond \
        --ship checkpoints/gated_cond.safetensors
    python -m pixelcnn.train --kind pixelcnn --channels 64 --minutes 12 --epochs 20 \
        --ship checkpoints/pixelcnn.safetensors
    python -m pixelcnn.train ... --resume      # same options: continues exactly where it stopped

The loss is the exact negative log-likelihood of Eq. 1 (Pixel RNN paper), in nats per image, on
dynamically binarized training images (a fresh Bernoulli sample of every batch, drawn from the
run's generator). The loop is plain: draw a batch, binarize, ``loss = nll.mean()``, Adam step;
after every epoch the exact NLL of the first ``--eval-n`` fixed-binarized test images is logged.
Run folder, saves, resume and budgets: ``shared_utils.runs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pixelcnn.autoregressive import nll_per_image, test_nll
from pixelcnn.model import build_model
from shared_utils.data import binarize, fixed_binarized_mnist, mnist_tensors
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam

MODEL_KEYS = ("kind", "channels", "n_layers", "first_kernel", "kernel_size", "n_classes")
# `python -m pixelcnn.bench` (benchmarks/results.json, 1 thread, batch 64): torch.compile trains
# the gated net at 71.5 img/s against 59.4 eager (1.20x), the plain net at 127.9 against 109.4
# (1.17x; channels_last 137.2), but its one-off compile took minutes on a busy machine: eager is
# the default, compile an option for long runs.
BACKENDS = ("eager", "channels_last", "compile")


@dataclass
class TrainConfig(RunConfig):
    backend: str = flag("eager", "execution of the training step (see bench.py)", choices=BACKENDS)
    kind: str = flag("gated", "Gated PixelCNN or plain PixelCNN", choices=("gated", "pixelcnn"))
    channels: int = flag(32, "feature maps per stack (gated) or residual block (plain)")
    n_layers: int = flag(7, "gated layers or residual blocks")
    first_kernel: int = flag(7, "kernel size of the first layer (mask A)")
    kernel_size: int = flag(3, "kernel size of the later layers")
    n_classes: int = flag(0, "0: unconditional; 10: class-conditional (gated only, Eq. 4)")
    binarization: str = flag(
        "dynamic",
        "dynamic: a new Bernoulli sample of every batch; fixed: the repo's fixed binarization",
        choices=("dynamic", "fixed"),
    )
    batch_size: int = flag(64, "images per step")
    lr: float = flag(1e-3, "Adam learning rate")
    out: Path = flag(Path("runs/pixelcnn"), "run folder")


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    run = Run(cfg)
    arch = {key: getattr(cfg, key) for key in MODEL_KEYS}
    try:
        module = build_model(**arch).to(run.device)
    except ValueError as err:
        raise RunError(f"{err} (model options {arch})") from None
    images, labels = mnist_tensors("train")  # uint8, binarized batch by batch ("dynamic") ...
    if cfg.binarization == "fixed":  # ... or once for the whole run
        images = fixed_binarized_mnist("train")[:, 0]
    x_train, y_train = images[: cfg.limit_train].unsqueeze(1), labels[: cfg.limit_train]
    x_test = fixed_binarized_mnist("test")[: cfg.eval_n]
    y_test = mnist_tensors("test")[1][: cfg.eval_n] if cfg.n_classes else None

    if cfg.backend == "channels_last":
        module.to(memory_format=torch.channels_last)  # a resume restores Adam in this layout too
    optimizer = adam(module.parameters(), lr=cfg.lr)
    run.start(module, arch, optimizer=optimizer)
    model = torch.compile(module) if cfg.backend == "compile" else module  # what the step calls
    batches = run.batches(x_train, y_train, batch_size=cfg.batch_size, drop_last=True)
    for batch, y in batches:  # drop_last: every batch has one shape (torch.compile)
        x = binarize(batch, run.generator) if cfg.binarization == "dynamic" else batch
        x = x.to(run.device)
        if cfg.backend == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(run.device) if cfg.n_classes else None
        loss = nll_per_image(model, x, y).mean()  # Eq. 1: exact -log p(x), nats per image
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.log(train_nll=loss.item())
        if run.epoch_done and cfg.eval_n:
            run.log_eval(test_nll=test_nll(module, x_test, y_test))
    return run.finish()


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
