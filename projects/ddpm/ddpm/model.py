"""The diffusion model: the network eps_theta, the noise schedule, the objective and the samplers.

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020; Song, Meng & Ermon,
"Denoising Diffusion Implicit Models", ICLR 2021; Ho & Salimans, "Classifier-Free Diffusion
Guidance", 2022.

Training minimises L_simple (Ho et al. Eq. 14), the variational bound with its weights dropped:

    L_simple(theta) = E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

with t ~ Uniform{1..T}, eps ~ N(0, I) and x_0 the data scaled to [-1, 1] (Sec. 3.3); the mean
over pixels, as in the authors' code. For classifier-free guidance (Ho & Salimans, Algorithm 1)
the class label c is replaced by the null label with probability ``p_uncond`` ("label dropout"),
so that the same network learns eps_theta(z, c) and the unconditional eps_theta(z); one trained
network then serves DDPM's ancestral sampler, DDIM and guided sampling.

One :class:`DDPM` holds the network (its only weights) and the schedule (``schedule.py``, rebuilt
from ``T``, ``beta_1``, ``beta_T``); the samplers are in ``samplers.py`` and the variational bound
in ``vlb.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ddpm import samplers
from ddpm.schedule import NoiseSchedule
from ddpm.unet import UNet

IMAGE_SHAPE = (1, 28, 28)
SAMPLERS = ("ddim", "ddpm")
VARIANCES = ("beta", "beta_tilde")


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Images to the model's [-1, 1] (Ho et al. Sec. 3.3): uint8 {0..255} -> 2 k / 255 - 1;
    floats in [0, 1] -> 2 x - 1."""
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    return 2.0 * x - 1.0


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """The model's [-1, 1] back to images in [0, 1] (clamped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def l_simple(eps: torch.Tensor, eps_pred: torch.Tensor) -> torch.Tensor:
    """||eps - eps_theta||^2 averaged over the pixels, per example (Eq. 14)."""
    return (eps - eps_pred).pow(2).flatten(1).mean(1)


def draw_training_noise(
    x0: torch.Tensor,
    y: torch.Tensor | None,
    T: int,
    generator: torch.Generator | None,
    p_uncond: float = 0.0,
    null_class: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The random numbers of one training step for a batch x_0 (Algorithm 1 of Ho et al. and of
    Ho & Salimans): t ~ Uniform{1..T}, eps ~ N(0, I), and the labels with each replaced by the
    null label with probability ``p_uncond``. Drawn on the CPU from ``generator`` in this order,
    so that a batch gets the same numbers whichever device or process computes it."""
    b = x0.shape[0]
    t = torch.randint(1, T + 1, (b,), generator=generator)
    eps = torch.randn(tuple(x0.shape), generator=generator)
    if y is not None and null_class is not None:
        drop = torch.rand(b, generator=generator) < p_uncond
        y = torch.where(drop, torch.full_like(y, null_class), y)
    return t, eps, y


class DDPM(nn.Module):
    """eps_theta (a U-Net, ``unet.py``) with the linear schedule of Ho et al. Sec. 4.

    ``forward(x0, y, t, eps)`` is L_simple of given draws (what train.py calls, possibly through
    DistributedDataParallel); ``loss`` draws them itself; ``sample`` runs DDIM or DDPM's
    sampler, unconditionally or with classifier-free guidance."""

    def __init__(
        self,
        T: int = 1000,
        beta_1: float = 1e-4,
        beta_T: float = 0.02,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (7,),
        num_classes: int = 10,
        groups: int = 8,
    ):
        super().__init__()
        self._config = {
            "T": int(T),
            "beta_1": float(beta_1),
            "beta_T": float(beta_T),
            "base_channels": int(base_channels),
            "channel_mults": [int(m) for m in channel_mults],
            "num_res_blocks": int(num_res_blocks),
            "attention_resolutions": [int(r) for r in attention_resolutions],
            "num_classes": int(num_classes),
            "groups": int(groups),
        }
        if base_channels % groups or base_channels < 4:
            raise ValueError(
                f"base_channels ({base_channels}) must be a multiple of groups ({groups}), >= 4"
            )
        self.schedule = NoiseSchedule.linear(T, beta_1, beta_T)
        self.net = UNet(
            in_channels=IMAGE_SHAPE[0],
            image_size=IMAGE_SHAPE[1],
            base_channels=base_channels,
            channel_mults=tuple(channel_mults),
            num_res_blocks=num_res_blocks,
            attention_resolutions=tuple(attention_resolutions),
            num_classes=num_classes,
            groups=groups,
        )

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return dict(self._config)

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def null_class(self) -> int | None:
        """The label index meaning "no class" (None for an unconditional network)."""
        n = self._config["num_classes"]
        return n if n > 0 else None

    # -- training ----------------------------------------------------------------------------------

    def forward(
        self, x0: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """L_simple (Eq. 14) of a batch x_0 in [-1, 1] with its draws of t, eps (and labels):
        the mean over the batch of ||eps - eps_theta(x_t, t, y)||^2 / D."""
        x_t = self.schedule.q_sample(x0, t, eps)  # Eq. 4
        return l_simple(eps, self.net(x_t, t, y)).mean()

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        p_uncond: float = 0.0,
    ) -> torch.Tensor:
        """L_simple of images ``x`` (uint8, or floats in [0, 1]) with labels ``y`` (or none:
        the null label), drawing t, eps and the label dropout from ``generator``."""
        x0 = to_model_range(x)
        t, eps, y = draw_training_noise(x0, y, self.T, generator, p_uncond, self.null_class)
        return self(x0, *self._on(x0, y, t, eps))

    def _on(self, like: torch.Tensor, *tensors: torch.Tensor | None) -> list[Any]:
        return [None if v is None else v.to(like.device) for v in tensors]

    @torch.no_grad()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0
    ) -> dict[str, torch.Tensor]:
        """Per-example L_simple of test images (uint8 or [0, 1]) with their labels, t and eps
        drawn from a generator seeded with ``seed`` (the same draws every time)."""
        x0 = to_model_range(x)
        t, eps, _ = draw_training_noise(x0, None, self.T, torch.Generator().manual_seed(seed))
        t, eps, y = self._on(x0, t, eps, y)
        return {"l_simple": l_simple(eps, self.net(self.schedule.q_sample(x0, t, eps), t, y))}

    # -- sampling ----------------------------------------------------------------------------------

    def eps(
        self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, w: float = 0.0
    ) -> torch.Tensor:
        """eps_theta(x_t, t, y); with labels and w != 0 the guided prediction
        (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null) (Ho & Salimans Eq. 6), both
        predictions from one batched call of the network. Returned in x_t's dtype (under a
        bf16 autocast only the network runs in bf16)."""
        if y is None or w == 0.0:
            return self.net(x_t, t, y).to(x_t.dtype)  # the sampler's arithmetic stays in x_t's
        if self.null_class is None:
            raise ValueError("guidance needs a class-conditional network (num_classes > 0)")
        null = torch.full_like(y, self.null_class)
        both = self.net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null]))
        eps_cond, eps_uncond = both.to(x_t.dtype).chunk(2)
        return samplers.guided(eps_cond, eps_uncond, w)

    def eps_fn(self, y: torch.Tensor | None = None, w: float = 0.0) -> samplers.EpsFn:
        """eps_theta(., .) for the samplers, with the labels (and guidance) fixed."""
        return lambda x_t, t: self.eps(x_t, t, y, w)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        sampler: str = "ddim",
        steps: int = 50,
        eta: float = 0.0,
        variance: str = "beta",
        labels: torch.Tensor | None = None,
        w: float = 0.0,
        clip_x0: bool = False,
        x_T: torch.Tensor | None = None,
        chain: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``n`` images in [0, 1] ([n, 1, 28, 28]).

        ``sampler``: "ddim" (Song Eq. 12 with ``eta``) or "ddpm" (Ho Algorithm 2 with
        sigma_t^2 = ``variance``, "beta" or "beta_tilde"), on ``steps`` of the T time steps.
        ``labels`` (n class indices): the class-conditional model, guided with weight ``w``
        (w = 0: the conditional model itself); no labels: the unconditional model (null label).
        Every random number, x_T included, comes from ``generator``."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler is one of {', '.join(SAMPLERS)}, not {sampler!r}")
        if variance not in VARIANCES:
            raise ValueError(f"variance is one of {', '.join(VARIANCES)}, not {variance!r}")
        device = next(self.parameters()).device
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
            if labels.numel() != n:
                raise ValueError(f"give one label per sample: {labels.numel()} labels, n = {n}")
            if self.null_class is None or not bool(
                ((labels >= 0) & (labels < self.null_class)).all()
            ):
                raise ValueError("labels must be class indices 0..num_classes-1 of this model")
        if x_T is None:
            x_T = samplers.prior_sample((n, *IMAGE_SHAPE), generator, device)
        eps_fn = self.eps_fn(labels, w)
        if sampler == "ddim":
            x0 = samplers.ddim(
                eps_fn, self.schedule, x_T, generator, steps, eta, clip_x0, chain=chain
            )
        else:
            x0 = samplers.ancestral(
                eps_fn, self.schedule, x_T, generator, steps, variance, clip_x0, chain=chain
            )
        return to_image_range(x0)


@torch.no_grad()
def draw(
    model: DDPM,
    n: int,
    seed: int = 0,
    chunk: int = 1000,
    classes: Sequence[int] | None = None,
    **options: Any,
) -> torch.Tensor:
    """``n`` samples [n, 1, 28, 28] in [0, 1] on the CPU, ``chunk`` at a time, every random
    number from one CPU generator seeded with ``seed``; ``options`` go to :meth:`DDPM.sample`.
    With ``classes`` sample i gets label classes[i % len(classes)]. Without classes and options
    these are the samples that ``python -m shared_utils.sample_quality CHECKPOINT --model
    ddpm.model:DDPM --seed S`` scores (DDIM, 50 steps, unconditional)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        labels = None
        if classes is not None:
            labels = torch.tensor([classes[(i + j) % len(classes)] for j in range(m)])
        out.append(model.sample(m, generator, labels=labels, **options).cpu())
    return torch.cat(out)
