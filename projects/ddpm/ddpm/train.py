"""Train a class-conditional DDPM on MNIST or Fashion-MNIST: L_simple with label dropout, EMA weights.

    python -m ddpm.train --dataset fashion-mnist --cpu-minutes 35 --threads 2 --autocast bf16 \
        --out runs/ddpm_fashion-mnist --ship checkpoints/ddpm_fashion-mnist.safetensors
    python -m ddpm.train ... --resume          # same options: continues exactly where it stopped
    torchrun --nproc_per_node=4 -m ddpm.train --device cuda ...   # data parallel (README.md)

One step is Algorithm 1 of Ho et al. (2020) on a minibatch, with Ho & Salimans' (2022) label
dropout: x_0 from the data scaled to [-1, 1], t ~ Uniform{1..T}, eps ~ N(0, I), each label
replaced by the null label with probability ``--p-uncond``, and one Adam step on L_simple
(Eq. 14; ``model.py``). As in the authors' code: a linear learning-rate warm-up
(``--warmup``), gradients clipped to norm ``--grad-clip``, and an exponential moving average of
the weights (``--ema-decay``) that is evaluated and shipped (``--ship``); ``last.safetensors``
holds the live weights, the optimizer and the average, for ``--resume``.

At the end of every epoch (when ``--eval-n`` > 0) eval.csv gets L_simple of the moving average
on the first ``--eval-n`` test images (fixed t and eps), and, when ``--eval-fid-n`` > 0, the FID
of that many unconditional DDIM samples (``--eval-sampling-steps`` steps, the same x_T every
time); a grid of those samples goes to ``<out>/samples/``, and the evaluations' CPU time to the
metrics (``eval_cpu_s``). The evaluations run under the step's ``--autocast``.

Data parallel (``torchrun``, see ``shared_utils.distributed``): ``--batch-size`` is the global
batch; every process draws the step's t, eps and label dropout for the whole global batch from
the run's generator (identical on every process) and computes its own contiguous shard of the
rows, so N processes take the same steps as one process (up to the order of floating-point
sums) and need no seeds of their own. Only rank 0 reads and writes the run folder.

A non-finite loss or gradient stops the run with an error before that step is saved, so the last
save in ``--out`` stays good.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ddpm.model import DDPM, draw_training_noise, to_model_range
from shared_utils.data import dataset_tensors
from shared_utils.distributed import (
    Dist,
    DistributedRun,
    all_reduce_mean,
    cleanup,
    setup,
    shard,
)
from shared_utils.runs import RunConfig, RunError, cli, flag
from shared_utils.training import EMA, adam, evaluating
from shared_utils.viz import save_images

DATASETS = ("mnist", "fashion-mnist")
BACKENDS = ("eager", "channels_last", "compile")
AUTOCASTS = ("none", "bf16")
GRID_SAMPLES = 64  # images in each samples/step_*.png
MODEL_FIELDS = (
    "T",
    "beta_1",
    "beta_T",
    "base_channels",
    "channel_mults",
    "num_res_blocks",
    "attention_resolutions",
    "num_classes",
    "groups",
)


@dataclass
class TrainConfig(RunConfig):
    dataset: str = flag("fashion-mnist", "training images", choices=DATASETS)
    # the model (model.py, unet.py)
    T: int = flag(1000, "diffusion steps T (Ho et al. Sec. 4)")
    beta_1: float = flag(1e-4, "beta_1 of the linear schedule (Ho et al. Sec. 4)")
    beta_T: float = flag(0.02, "beta_T of the linear schedule (Ho et al. Sec. 4)")
    base_channels: int = flag(32, "channels of the U-Net at 28x28")
    channel_mults: list[int] = flag([1, 2, 2], "channel multipliers of the resolutions 28, 14, 7")
    num_res_blocks: int = flag(1, "residual blocks per resolution (one more on the way up)")
    attention_resolutions: list[int] = flag([7], "resolutions with self-attention")
    num_classes: int = flag(10, "classes of the conditional network (0: unconditional)")
    groups: int = flag(8, "groups of every group normalisation")
    # the optimisation
    p_uncond: float = flag(0.1, "label dropout: probability of the null label (Ho & Salimans)")
    batch_size: int = flag(128, "images per step (the global batch under torchrun)")
    lr: float = flag(1e-3, "Adam learning rate after the warm-up")
    warmup: int = flag(200, "steps of linear learning-rate warm-up")
    grad_clip: float = flag(1.0, "clip the gradient to this norm (0: off)")
    ema_decay: float = flag(0.999, "decay of the weights' moving average that is shipped")
    # evaluation during training
    eval_n: int = flag(1000, "test images whose L_simple is logged at every epoch's end (0: none)")
    eval_fid_n: int = flag(500, "samples whose FID is logged at every epoch's end (0: none)")
    eval_sampling_steps: int = flag(10, "DDIM steps of those samples")
    # execution
    backend: str = flag("eager", "execution of the step (bench.py)", choices=BACKENDS)
    autocast: str = flag(
        "none", "bf16: mixed precision for the step (2x faster on CPUs with AMX)", choices=AUTOCASTS
    )
    epochs: int = flag(100, "stop after this many epochs (a budget usually stops first)")
    save_every: int = flag(250, "steps between resumable saves (and one at the stop)")
    out: Path = flag(Path("runs/ddpm"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of :class:`DDPM` in ``cfg``."""
    return {name: getattr(cfg, name) for name in MODEL_FIELDS}


def _validate(cfg: TrainConfig) -> None:
    if not 0.0 <= cfg.p_uncond <= 1.0:
        raise RunError(f"--p-uncond is a probability in [0, 1], not {cfg.p_uncond}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise RunError(f"--ema-decay must be in [0, 1), not {cfg.ema_decay}")
    if cfg.T < 2 or not 0.0 < cfg.beta_1 <= cfg.beta_T < 1.0:
        raise RunError("need T >= 2 and 0 < --beta-1 <= --beta-T < 1")
    if cfg.lr <= 0 or cfg.warmup < 0 or cfg.grad_clip < 0:
        raise RunError("--lr must be positive, --warmup and --grad-clip non-negative")
    if cfg.base_channels < 4 or cfg.base_channels % cfg.groups:
        raise RunError(
            f"--base-channels ({cfg.base_channels}) must be a multiple of --groups ({cfg.groups})"
        )
    if len(cfg.channel_mults) != 3 or min(cfg.channel_mults) < 1 or cfg.num_res_blocks < 1:
        raise RunError(
            "--channel-mults takes three positive numbers (28, 14 and 7 pixels) and "
            "--num-res-blocks a positive number"
        )
    if cfg.eval_fid_n < 0 or cfg.eval_sampling_steps < 1 or cfg.eval_sampling_steps > cfg.T:
        raise RunError(f"--eval-fid-n must be >= 0 and --eval-sampling-steps in 1..{cfg.T}")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate of step ``step`` (from 1): linear warm-up to ``--lr``, then constant
    (Ho et al. App. B: warm-up over the first 5000 steps, then 2e-4)."""
    if cfg.warmup == 0:
        return cfg.lr
    return cfg.lr * min(1.0, step / cfg.warmup)


def ema_decay_at(step: int, decay: float) -> float:
    """min(decay, (1 + t) / (10 + t)) at step t: a short average while the weights change fast
    at the start, ``decay`` afterwards."""
    return min(decay, (1.0 + step) / (10.0 + step))


def autocast(cfg: TrainConfig, device: torch.device):
    """The mixed-precision context of ``--autocast`` on ``device``."""
    if cfg.autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build(cfg: TrainConfig, device: torch.device | str = "cpu") -> DDPM:
    """The model of ``cfg`` (seeded by the caller) on ``device``, in ``--backend``'s layout."""
    model = DDPM(**model_kwargs(cfg)).to(device)
    if cfg.backend == "channels_last":
        model.to(memory_format=torch.channels_last)
    return model


def step_module(cfg: TrainConfig, model: DDPM, dist: Dist) -> nn.Module:
    """What the step calls: the model, wrapped in DistributedDataParallel under torchrun, and
    compiled with ``--backend compile``."""
    module: nn.Module = model
    if dist.enabled:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(module) if cfg.backend == "compile" else module


def to_backend(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A batch of images in the memory layout of ``--backend``."""
    return x.contiguous(memory_format=torch.channels_last) if cfg.backend == "channels_last" else x


def sample_quality() -> ModuleType:
    """``shared_utils.sample_quality``, imported when first needed (through ``sys.modules``,
    so that tests can substitute it)."""
    return importlib.import_module("shared_utils.sample_quality")


def train_step(
    step_model: nn.Module,
    model: DDPM,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    cfg: TrainConfig,
    dist: Dist,
    lr: float,
) -> dict[str, float]:
    """One step of Algorithm 1 on the global batch (x uint8, y labels): draw t, eps and the
    label dropout for all rows, compute L_simple on this process's shard, one Adam step.
    Returns the loss (the mean over the global batch) and the gradient norm before clipping."""
    x0 = to_model_range(x)
    t, eps, y = draw_training_noise(x0, y, model.T, generator, cfg.p_uncond, model.null_class)
    rows = shard(x0.shape[0], dist)
    device = dist.device
    x0, eps = (to_backend(v[rows].to(device), cfg) for v in (x0, eps))
    t = t[rows].to(device)
    y = None if model.null_class is None else y[rows].to(device)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(cfg, device):
        loss = step_model(x0, y, t, eps)  # L_simple (Eq. 14)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    else:
        grad_norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
        )
    optimizer.step()
    return {"loss": all_reduce_mean(loss.item()), "grad_norm": float(grad_norm)}


def check_divergence(run: DistributedRun, logs: dict[str, float]) -> None:
    """Raise RunError, before the run kit saves this step, if the loss or the gradient is not
    finite (the loss is the same on every process, so all stop together)."""
    bad = [f"{k} = {v}" for k, v in logs.items() if not math.isfinite(v)]
    if bad:
        raise RunError(
            f"training diverged at step {run.step}: {', '.join(bad)}; nothing of it was saved, "
            f"{run.out}/last.safetensors keeps the last save (every --save-every steps). Start a "
            "new --out with other options (e.g. a lower --lr or another --seed)."
        )


def fid_samples(model: DDPM, n: int, steps: int, seed: int, chunk: int = 500) -> torch.Tensor:
    """``n`` unconditional DDIM samples (eta = 0) in [0, 1] on the CPU, from a generator seeded
    with ``seed``: the same x_T at every evaluation."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    for i in range(0, n, chunk):
        x_T = torch.randn((min(chunk, n - i), 1, 28, 28), generator=generator).to(device)
        out.append(model.sample(len(x_T), None, steps=steps, x_T=x_T).cpu())
    return torch.cat(out)


def evaluate_during_training(
    run: DistributedRun, cfg: TrainConfig, ema_model: DDPM, x_test, y_test
) -> None:
    """Rank 0: test L_simple of the moving average, the FID of its samples, a sample grid; the
    evaluations' CPU time is added up in the metrics (``eval_cpu_s``). The time of each row is in
    time.csv (``shared_utils.benchmarking.eval_curve``), so that eval.csv of a resumed run is
    byte for byte the straight run's."""
    start = time.process_time()
    row: dict[str, float] = {}
    samples = None
    with evaluating(ema_model), autocast(cfg, run.device):
        if cfg.eval_n:
            values = [
                ema_model.evaluate(x_test[i : i + 500], y_test[i : i + 500], seed=cfg.seed)
                for i in range(0, len(x_test), 500)
            ]
            row["test_l_simple"] = float(torch.cat([v["l_simple"] for v in values]).mean())
        if cfg.eval_fid_n:
            samples = fid_samples(ema_model, cfg.eval_fid_n, cfg.eval_sampling_steps, cfg.seed + 1)
    if samples is not None:  # the metric in float32, outside the autocast
        samples = samples.float()
        row["fid"] = sample_quality().fid(samples, cfg.dataset)
        save_images(
            samples[:GRID_SAMPLES], run.out / "samples" / f"step_{run.step:07d}.png", nrow=8
        )
    run.metrics["eval_cpu_s"] = run.metrics.get("eval_cpu_s", 0.0) + time.process_time() - start
    run.log_eval(**row)


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes (on every process of a torchrun job); return the
    path of the final checkpoint."""
    _validate(cfg)
    dist = setup(cfg.device)
    try:
        return _train(cfg, dist)
    finally:
        cleanup()


def _train(cfg: TrainConfig, dist: Dist) -> Path:
    run = DistributedRun(cfg, dist)
    shard(cfg.batch_size, dist)  # a global batch must split evenly over the processes
    images, labels = dataset_tensors(cfg.dataset, "train")  # uint8 [60000, 1, 28, 28]
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = dataset_tensors(cfg.dataset, "test")
    x_test, y_test = x_test[: cfg.eval_n].to(run.device), y_test[: cfg.eval_n].to(run.device)

    model = build(cfg, run.device)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    run.start(model, model.config(), optimizer=optimizer, ema=ema)
    step_model = step_module(cfg, model, dist)

    evaluate = dist.is_main and (cfg.eval_n > 0 or cfg.eval_fid_n > 0)
    for x, y in run.batches(images, labels, batch_size=cfg.batch_size, drop_last=True):
        lr = learning_rate(run.step, cfg)
        logs = train_step(step_model, model, optimizer, x, y, run.generator, cfg, dist, lr)
        ema.decay = ema_decay_at(run.step, cfg.ema_decay)
        ema.update(model)
        check_divergence(run, logs)
        run.log(**logs, lr=lr)
        if run.epoch_done and evaluate:
            evaluate_during_training(run, cfg, ema.shadow, x_test, y_test)
    return run.finish(weights=ema.state_dict() if cfg.ship is not None else None)


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
