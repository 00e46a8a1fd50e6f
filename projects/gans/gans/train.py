"""Train DCGAN, WGAN-GP or SNGAN on MNIST or Fashion-MNIST (28x28 grey images scaled to [-1, 1]).

    python -m gans.train --gan dcgan --dataset mnist --cpu-minutes 30 --out runs/dcgan_mnist \
        --ship checkpoints/dcgan_mnist.safetensors
    python -m gans.train --gan wgan-gp --dataset fashion-mnist --cpu-minutes 60 \
        --out runs/wgan_gp_fashion --ship checkpoints/wgan_gp_fashion.safetensors
    python -m gans.train ... --resume          # same options: continues exactly where it stopped

One step of the run (what ``--max-steps``, ``--save-every``, ``--log-every`` and ``--eval-every``
count) is one iteration of the outer loop of Algorithm 1 of Gulrajani et al. (Goodfellow et al.'s
Algorithm 1 with k = n_critic): n_critic discriminator updates, each on its own minibatch of real
images and of fresh z, then one generator update on fresh z. The real minibatches come from
``run.batches`` in blocks of n_critic x batch_size images (an epoch is one pass over the training
images by the discriminator), so that every step's work and randomness are whole and a resumed
run is the straight run bit for bit. The loss functions are the papers' (dcgan.py, wgan_gp.py,
sngan.py); G and D are in networks.py.

Options left at their default None take the paper's values for ``--gan`` (``--lr``, ``--beta1``,
``--beta2``, ``--n-critic``; see ``PAPER``); the run records the values used. An exponential moving
average of G's weights (``--ema-decay``) is what is shipped and evaluated. Every ``--eval-every``
steps the FID of ``--eval-fid-n`` samples (``shared_utils.sample_quality.fid``) goes into eval.csv
with the CPU-minutes spent so far, and a grid of samples from fixed z into ``<out>/samples/``.
A non-finite loss or weight (or, with ``--d-loss-limit``, a discriminator loss stuck high) stops
the run with an error before anything is saved, so the last save in ``--out`` stays good.
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from gans import dcgan, sngan, wgan_gp
from gans.networks import Discriminator, Generator, draw, standing_statistics
from shared_utils.data import dataset_tensors
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import EMA, adam
from shared_utils.viz import save_images

OBJECTIVES: dict[str, ModuleType] = {"dcgan": dcgan, "wgan-gp": wgan_gp, "sngan": sngan}
D_NORM = {"dcgan": "batch", "wgan-gp": "none", "sngan": "spectral"}
# The papers' optimiser settings (see each objective's module docstring).
PAPER: dict[str, dict[str, Any]] = {
    "dcgan": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1},  # Radford et al. Sec. 4
    "wgan-gp": {"lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5},  # Gulrajani Algorithm 1
    "sngan": {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1},  # Miyato Table 1, C
}
DATASETS = ("mnist", "fashion-mnist")
BACKENDS = ("eager", "channels_last", "compile")
GRID_SAMPLES = 64  # images in each samples/step_*.png


@dataclass
class TrainConfig(RunConfig):
    gan: str = flag(
        "dcgan",
        "the paper: objective, D's normalisation, defaults",
        choices=("dcgan", "wgan-gp", "sngan"),
    )
    dataset: str = flag("mnist", "training images", choices=DATASETS)
    z_dim: int = flag(64, "dimension of z ~ N(0, I)")
    width: int = flag(64, "w: channels of G's last hidden layer and of D's first (networks.py)")
    batch_size: int = flag(64, "m: real images per D update and z per G update")
    lr: float | None = flag(
        None, "Adam learning rate of G and D; None: the paper's (dcgan, sngan 2e-4; wgan-gp 1e-4)"
    )
    beta1: float | None = flag(None, "Adam beta1; None: the paper's (dcgan, sngan 0.5; wgan-gp 0)")
    beta2: float | None = flag(
        None, "Adam beta2; None: the paper's (dcgan, sngan 0.999; wgan-gp 0.9)"
    )
    n_critic: int | None = flag(
        None, "D updates per G update, i.e. per step; None: the paper's (dcgan, sngan 1; wgan-gp 5)"
    )
    lambda_gp: float = flag(10.0, "wgan-gp: weight lambda of the gradient penalty (Eq. 3)")
    ema_decay: float = flag(
        0.999, "decay of the moving average of G's weights that is shipped and evaluated (0: off)"
    )
    eval_every: int = flag(
        500, "steps between FID evaluations (eval.csv) and sample grids (samples/); 0: never"
    )
    eval_fid_n: int = flag(2000, "samples per FID evaluation during training")
    d_loss_limit: float | None = flag(
        None, "stop with an error when D's loss stays above this for --d-loss-patience steps"
    )
    d_loss_patience: int = flag(200, "consecutive steps of --d-loss-limit")
    backend: str = flag(
        "eager",
        "execution of the step (bench.py); compile leaves WGAN-GP's critic eager (double backward)",
        choices=BACKENDS,
    )
    epochs: int = flag(100, "stop after this many passes of D over the training images")
    max_steps: int | None = flag(None, "stop after this many steps (G updates) in all")
    save_every: int = flag(500, "steps (G updates) between resumable saves (and one at the stop)")
    log_every: int = flag(100, "steps (G updates) averaged into one row of log.csv")
    eval_n: int = flag(0, "not used: GANs are scored by --eval-every and --eval-fid-n")
    out: Path = flag(Path("runs/gans"), "run folder")


def with_paper_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every optimiser option left at None set to the paper's value for ``cfg.gan``."""
    paper = PAPER[cfg.gan]
    return replace(cfg, **{k: v for k, v in paper.items() if getattr(cfg, k) is None})


def _validate(cfg: TrainConfig) -> None:
    if cfg.n_critic < 1 or cfg.z_dim < 1 or cfg.width < 1:
        raise RunError("--n-critic, --z-dim and --width must be positive integers")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise RunError(f"--ema-decay must be in [0, 1) (0: off), not {cfg.ema_decay}")
    if cfg.eval_every < 0 or (cfg.eval_every and cfg.eval_fid_n < 1):
        raise RunError("--eval-every must be >= 0 and --eval-fid-n >= 1")
    if cfg.d_loss_patience < 1:
        raise RunError("--d-loss-patience must be a positive integer")


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels {0..255} -> floats in [-1, 1], the range of G's tanh (Radford et al. Sec. 4)."""
    return images.float() / 127.5 - 1.0


def build(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[Generator, Discriminator]:
    """G and D of ``cfg`` (seeded by the caller) on ``device``, initialised as DCGAN's (Radford et
    al. Sec. 4: N(0, 0.02)) for all three GANs: the architecture is DCGAN's, and the objectives
    are what the comparison is about (and in a short SNGAN run with PyTorch's default
    initialisation, D had won within 150 steps; see README.md)."""
    G = Generator(cfg.z_dim, cfg.width).apply(dcgan.init_weights)
    D = Discriminator(cfg.width, D_NORM[cfg.gan]).apply(dcgan.init_weights)
    G, D = G.to(device), D.to(device)
    if cfg.backend == "channels_last":
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    return G, D


def step_modules(cfg: TrainConfig, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
    """What the training step calls: G and D, or with ``--backend compile`` their compiled
    versions, except WGAN-GP's critic (its penalty needs a double backward pass, which
    torch.compile's autograd does not support)."""
    if cfg.backend != "compile":
        return G, D
    return torch.compile(G), (D if cfg.gan == "wgan-gp" else torch.compile(D))


def to_backend(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A batch of images in the memory layout of ``--backend``."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.backend == "channels_last" else x


def discriminator_step(
    G: nn.Module,
    D: nn.Module,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    objective: ModuleType,
    z_generator: torch.Generator | None = None,
    **loss_options: Any,
) -> dict[str, torch.Tensor]:
    """One update of D on a minibatch of real images against G(z) on fresh z (G is not updated:
    its output is computed without gradients). Returns D's loss and statistics, detached."""
    with torch.no_grad():
        fake = G(G.sample_z(real.shape[0], z_generator))
    d_loss, stats = objective.discriminator_loss(D, real, fake, **loss_options)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return {"d_loss": d_loss.detach(), **stats}


def generator_step(
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    batch_size: int,
    objective: ModuleType,
    z_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One update of G on ``batch_size`` fresh z; gradients flow through D to G(z), but D's
    weights get none (and are not updated). Returns G's loss, detached."""
    D.requires_grad_(False)
    try:
        g_loss = objective.generator_loss(D, G(G.sample_z(batch_size, z_generator)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return g_loss.detach()


def train_step(
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    reals: list[torch.Tensor] | tuple[torch.Tensor, ...],
    objective: ModuleType,
    z_generator: torch.Generator | None = None,
    **loss_options: Any,
) -> dict[str, float]:
    """One iteration of Algorithm 1: a D update on each real minibatch of ``reals`` (n_critic of
    them), then a G update with as many z as a minibatch has images. Returns, for the log, the
    mean of the D updates' losses and statistics and G's loss."""
    sums: dict[str, float] = {}
    for real in reals:
        d_logs = discriminator_step(G, D, opt_d, real, objective, z_generator, **loss_options)
        for key, value in d_logs.items():
            sums[key] = sums.get(key, 0.0) + value.item()
    g_loss = generator_step(G, D, opt_g, reals[0].shape[0], objective, z_generator)
    return {"g_loss": g_loss.item(), **{k: v / len(reals) for k, v in sums.items()}}


def ema_decay_at(step: int, decay: float) -> float:
    """min(decay, (1 + t) / (10 + t)) at G update t: a short average while G changes fast at the
    start (TensorFlow's ExponentialMovingAverage with num_updates), ``decay`` afterwards."""
    return min(decay, (1.0 + step) / (10.0 + step))


def evaluated_generator(G: Generator, ema: EMA | None) -> Generator:
    """The generator that is evaluated and shipped, as an eval-mode copy: the moving average of
    G's weights with its own batch-norm statistics (``standing_statistics``), or G itself."""
    if ema is None:
        return copy.deepcopy(G).eval()
    return standing_statistics(ema.shadow)


def sample_quality() -> ModuleType:
    """``shared_utils.sample_quality``, imported when first needed (its feature network is
    loaded lazily too); through ``sys.modules`` so that tests can substitute it."""
    return importlib.import_module("shared_utils.sample_quality")


def evaluate_during_training(run: Run, cfg: TrainConfig, G_eval: Generator) -> None:
    """FID of ``--eval-fid-n`` samples (the same z every time) into eval.csv with the CPU-minutes
    so far, with and without the evaluations' own CPU time; a grid of samples into samples/."""
    start = time.process_time()
    fid = sample_quality().fid(draw(G_eval, cfg.eval_fid_n, cfg.seed + 1), cfg.dataset)
    grid = draw(G_eval, GRID_SAMPLES, cfg.seed)
    save_images(grid, run.out / "samples" / f"step_{run.step:07d}.png", nrow=8)
    run.metrics["eval_cpu_s"] = run.metrics.get("eval_cpu_s", 0.0) + time.process_time() - start
    run.log_eval(
        fid=fid,
        cpu_minutes=round(run.cpu_seconds / 60, 4),
        train_cpu_minutes=round((run.cpu_seconds - run.metrics["eval_cpu_s"]) / 60, 4),
        wall_minutes=round(run.wall_seconds / 60, 4),
    )


def check_divergence(run: Run, cfg: TrainConfig, logs: dict[str, float], *nets: nn.Module) -> None:
    """Raise RunError, before the run kit saves this step, if a loss or a weight is not finite,
    or if D's loss has stayed above ``--d-loss-limit`` for ``--d-loss-patience`` steps."""
    bad = [f"{k} = {v}" for k, v in logs.items() if not math.isfinite(v)]
    params = [p for net in nets for p in net.parameters()]
    if not bad and not torch.stack([p.isfinite().all() for p in params]).all():
        bad = ["a weight of G or D"]
    if cfg.d_loss_limit is not None:
        high = run.state.get("d_loss_high", 0) + 1 if logs["d_loss"] > cfg.d_loss_limit else 0
        run.state["d_loss_high"] = high
        if high >= cfg.d_loss_patience:
            bad.append(f"d_loss above {cfg.d_loss_limit:g} for {high} steps")
    if bad:
        raise RunError(
            f"training diverged at step {run.step}: {', '.join(bad)}; nothing of it was saved, "
            f"{run.out}/last.safetensors keeps the last save (every --save-every steps). Start "
            "a new --out with other options (e.g. a lower --lr or another --seed)."
        )


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    cfg = with_paper_defaults(cfg)
    _validate(cfg)
    run = Run(cfg)
    images, _ = dataset_tensors(cfg.dataset, "train")  # uint8 [60000, 1, 28, 28]
    x_train = images[: cfg.limit_train]

    G, D = build(cfg, run.device)
    opt_g = adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    ema = EMA(G, cfg.ema_decay) if cfg.ema_decay > 0 else None
    stateful = {"discriminator": D, "opt_g": opt_g, "opt_d": opt_d}
    run.start(G, G.config(), **stateful, **({"ema": ema} if ema is not None else {}))

    objective = OBJECTIVES[cfg.gan]
    options: dict[str, Any] = {}
    if cfg.gan == "wgan-gp":  # eps of x^ (Algorithm 1) from the run's generator
        options = {"lambda_gp": cfg.lambda_gp, "generator": run.generator}
    G_step, D_step = step_modules(cfg, G, D)
    block = cfg.n_critic * cfg.batch_size
    for x in run.batches(x_train, batch_size=block, drop_last=True):
        x = to_backend(to_model_range(x).to(run.device), cfg)
        reals = x.split(cfg.batch_size)  # n_critic minibatches of m real images
        logs = train_step(G_step, D_step, opt_g, opt_d, reals, objective, run.generator, **options)
        if ema is not None:
            ema.decay = ema_decay_at(run.step, cfg.ema_decay)
            ema.update(G)
        check_divergence(run, cfg, logs, G, D)
        run.log(**logs)
        if cfg.eval_every and run.step % cfg.eval_every == 0:
            evaluate_during_training(run, cfg, evaluated_generator(G, ema))
    weights = evaluated_generator(G, ema).state_dict() if cfg.ship is not None else None
    return run.finish(weights=weights)


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
