"""Train VQ-VAE (stage 1, Eq. 3) or the prior over its codes (stage 2), with Adam.

    # stage 1: encoder, codebook, decoder (dead codes restarted every 100 steps)
    python -m vqvae.train --stage vqvae --dataset mnist --cpu-minutes 9 \
        --out runs/vqvae_mnist --ship runs/vqvae_mnist.safetensors
    # stage 2: the transformer prior on the codes of the training set, stage 1 frozen; the
    # shipped checkpoint holds every network
    python -m vqvae.train --stage prior --vqvae runs/vqvae_mnist.safetensors \
        --dataset mnist --cpu-minutes 5 --out runs/prior_mnist \
        --ship checkpoints/vqvae_mnist.safetensors
    python -m vqvae.train ... --resume       # same options: continues exactly where it stopped

Origin: written for dgm-course (MIT licence).

Stage 1 is the paper's section 3.2 objective (model.py, quantizer.py): one Adam step on Eq. 3
per minibatch; with ``--ema`` the codebook follows appendix A.1 instead. Every ``--reset-every``
steps the codes that no encoder output chose since the last check are restarted from encoder
outputs of the current batch (0: never; the dead-code ablation). log.csv records the loss terms
and the batch's codebook usage and perplexity; eval.csv the test metrics of ``Model.evaluate``
and the codebook usage over the first ``--eval-n`` test images.

Stage 2 loads a stage-1 checkpoint (``--vqvae``), encodes every training image to its 7x7 grid
of codes (Eq. 1) once, and fits the prior by maximum likelihood on those grids; the shipped
checkpoint holds the VQ-VAE and the prior, so ``Model.sample`` works from it alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from shared_utils.checkpoints import load_checkpoint
from shared_utils.data import dataset_tensors, evaluation_inputs, model_inputs
from shared_utils.runs import Run, RunConfig, RunError, cli, flag
from shared_utils.training import adam, evaluating

from .evaluate import codebook_usage, evaluate
from .model import DATASET, Model, ModelConfig
from .quantizer import usage_and_perplexity

STAGES = ("vqvae", "prior")
PRIOR_KEYS = ("prior_dim", "prior_layers", "prior_heads")


@dataclass
class TrainConfig(ModelConfig, RunConfig):  # every field is a flag: batch_size -> --batch-size
    stage: str = flag("vqvae", "vqvae: Eq. 3 (stage 1); prior: p(z) on the codes", choices=STAGES)
    vqvae: str | None = flag(None, "stage 2: the stage-1 checkpoint whose codes the prior models")
    dataset: str = flag(DATASET, "training and test images", choices=("mnist", "fashion-mnist"))
    batch_size: int = flag(128, "images (or code grids) per step (paper: 128)")
    lr: float = flag(1e-3, "Adam learning rate (paper: 2e-4 for its 250k steps)")
    reset_every: int = flag(100, "stage 1: restart codes unused for this many steps (0: never)")
    out: Path = flag(Path("runs/vqvae"), "run folder")


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of ``Model``: the fields of ``ModelConfig`` in ``cfg``."""
    return {f.name: getattr(cfg, f.name) for f in fields(ModelConfig)}


def _load_stage1(model: Model, path: str) -> None:
    """Copy the encoder, codebook and decoder of a stage-1 checkpoint into ``model``."""
    ckpt = load_checkpoint(path)
    mine = {k: v for k, v in model.config().items() if k not in PRIOR_KEYS}
    theirs = {k: v for k, v in ckpt.model.items() if k not in PRIOR_KEYS}
    if mine != theirs:
        raise RunError(
            f"--vqvae {path} was trained with other model options ({theirs}); pass the same ones."
        )
    weights = {k: v for k, v in ckpt.state_dict.items() if not k.startswith("prior.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("prior.") for k in missing):
        raise RunError(f"--vqvae {path} does not hold this model's encoder, codebook and decoder")


def encode_all(model: Model, dataset: str, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The code grids [N, 49] (raster order) of uint8 ``images`` [N, 1, 28, 28]."""
    device = next(model.parameters()).device
    with evaluating(model):
        return torch.cat(
            [
                model.encode(model_inputs(dataset, images[i : i + batch]).to(device)).cpu()
                for i in range(0, images.shape[0], batch)
            ]
        )


def train(cfg: TrainConfig) -> Path:
    """Run the training loop ``cfg`` describes; return the path of the final checkpoint."""
    if cfg.stage == "prior" and not cfg.vqvae:
        raise RunError("--stage prior needs --vqvae CHECKPOINT (a stage-1 checkpoint)")
    run = Run(cfg)
    images, labels = dataset_tensors(cfg.dataset, "train")  # uint8 [N, 1, 28, 28], int64 [N]
    images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    x_test, y_test = evaluation_inputs(cfg.dataset, "test")
    x_test, y_test = x_test[: cfg.eval_n], y_test[: cfg.eval_n]

    model = Model(**model_kwargs(cfg)).to(run.device)
    extra: dict[str, Any] = {}
    if cfg.stage == "vqvae":
        optimizer = adam(model.vqvae_parameters(), lr=cfg.lr)
        data: torch.Tensor = images
    else:
        _load_stage1(model, cfg.vqvae)
        optimizer = adam(model.prior.parameters(), lr=cfg.lr)
        start = time.process_time()
        data = encode_all(model, cfg.dataset, images)  # [N, 49]: the prior's training set
        extra["encode_train_cpu_s"] = round(time.process_time() - start, 1)
    run.start(model, model.config(), optimizer=optimizer)  # on --resume: restores all of it

    def end_of_epoch() -> None:
        metrics = evaluate(model, x_test, y_test, 500)
        used, perplexity = codebook_usage(model, x_test)
        run.log_eval(
            **{f"test_{name}": value for name, value in metrics.items()},
            test_codes_used=used,
            test_perplexity=perplexity,
        )

    if cfg.stage == "vqvae":
        for batch in run.batches(data, batch_size=cfg.batch_size):
            x = model_inputs(cfg.dataset, batch, run.generator).to(run.device)
            terms = model.loss_terms(x)  # Eq. 3 (model.py, quantizer.py)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            restarted = 0
            if cfg.reset_every and run.step % cfg.reset_every == 0:
                z_e = terms["z_e"].detach().permute(0, 2, 3, 1).reshape(-1, cfg.code_dim)
                restarted = model.quantizer.restart_dead_codes(z_e, run.generator)
            used, perplexity = usage_and_perplexity(terms["codes"], cfg.num_codes)
            run.log(
                loss=terms["loss"].item(),
                recon=terms["recon"].item(),
                codebook=terms["codebook"].item(),
                commit=terms["commit"].item(),
                batch_codes_used=used,
                batch_perplexity=perplexity,
                restarted=restarted,
            )
            if run.epoch_done and cfg.eval_n:
                end_of_epoch()
    else:
        for z in run.batches(data, batch_size=cfg.batch_size):
            loss = model.prior_loss(z.to(run.device))  # -log p(z) per code, nats
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.log(loss=loss.item())
            if run.epoch_done and cfg.eval_n:
                end_of_epoch()
    return run.finish(metrics=extra)


def main(argv: list[str] | None = None) -> int:
    return cli(train, TrainConfig, argv)


if __name__ == "__main__":
    raise SystemExit(main())
