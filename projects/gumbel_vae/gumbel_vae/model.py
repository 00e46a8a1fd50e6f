"""A VAE with categorical latents trained through the Gumbel-softmax (Concrete) relaxation.

Origin: written for dgm-course (MIT licence).

Jang, Gu & Poole (ICLR 2017) and Maddison, Mnih & Teh (ICLR 2017). Notation of Jang et al.:
a categorical variable z with class probabilities pi_1..pi_k, Gumbel noise g_i = -log(-log u_i),
u_i ~ Uniform(0, 1), temperature tau > 0.

* Gumbel-Max trick (Jang Eq. 1): z = one_hot(argmax_i [g_i + log pi_i]) is an exact sample of
  Categorical(pi). Not differentiable in pi.
* Gumbel-softmax (Jang Eq. 2; the Concrete distribution, Maddison Def. 1):
      y_i = exp((log pi_i + g_i) / tau) / sum_j exp((log pi_j + g_j) / tau),   i = 1..k,
  a point on the simplex, differentiable in pi, tending to the one-hot z of Eq. 1 as tau -> 0
  (Maddison Prop. 1c) while its gradients grow in variance. Its density is Jang Eq. 3.
* Straight-through Gumbel-softmax (Jang Sec. 2.2): the forward pass uses the hard one-hot
  z = one_hot(argmax_i y_i) (the same z as Eq. 1), the backward pass the gradient of the soft y:
      y_st = z - stop_gradient(y) + y.

The model (Jang Sec. 4.2 has one stochastic layer of 20 variables with 10 classes; we follow the
authors' public notebook: N = 30 variables with K = 10 classes each, 2-layer ReLU MLPs, Bernoulli
pixels):

    p(z) = prod_n Categorical(z_n; 1/K)                        (uniform prior, fixed)
    p(x | z) = prod_j Bernoulli(x_j; sigmoid(f_theta(z)_j)),    f: N*K - 256 - 512 - 784, ReLU
    q(z | x) = prod_n Categorical(z_n; pi_n(x)),                log pi(x): 784 - 512 - 256 - N*K

The training objective (minimised) is minus the relaxed ELBO,

    L(x) = E_{y ~ GS(pi(x), tau)}[log p(x | y)] - KL(q(z | x) || p(z)),                    (4)
    KL(q || p) = sum_n sum_k pi_nk (log pi_nk - log(1/K))    (closed form, the categorical KL),

with the relaxed y of Eq. 2 (or the straight-through z) in the decoder. With relaxed samples Eq. 4
is not a bound on the discrete model's likelihood (Jang Sec. 4.2); with straight-through samples
its value is a one-sample estimate of that model's ELBO, but not its gradient. Every number
reported here uses the discrete model: hard z ~ q(z | x) and the importance weights
w = p(x | z) p(z) / q(z | x) (Burda et al. Eq. 8), whose log-mean over k samples is a lower bound
on log p(x) in expectation for any k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.metrics import importance_sampled_log_likelihood
from shared_utils.runs import flag

DATASET = "mnist-binarized"
METRIC = "nll_nats"
METRIC_LABEL = "test NLL (nats, IWAE bound)"
TEST_CONFIG: dict[str, Any] = {"num_latents": 4, "num_classes": 3, "hidden": [32, 16]}
IMAGE_SHAPE = (1, 28, 28)
X_DIM = 784
EVAL_K = 100  # importance samples of Model.evaluate's NLL unless told otherwise


# --- the Gumbel-softmax machinery (model-independent, tested on its own) -------------------------


def sample_gumbel(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard Gumbel noise g = -log(-log u), u ~ Uniform(0, 1) (Jang Sec. 2)."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - torch.finfo(dtype).eps)))


def gumbel_max(logits: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Jang Eq. 1: the exact categorical sample one_hot(argmax_i [log pi_i + g_i]) on the last axis
    (P(class i) = pi_i: Maddison Prop. 1b). ``logits`` need only be log pi up to a constant."""
    index = (logits + g).argmax(dim=-1)
    return F.one_hot(index, logits.shape[-1]).to(logits.dtype)


def gumbel_softmax(
    logits: torch.Tensor, tau: float, g: torch.Tensor, hard: bool = False
) -> torch.Tensor:
    """Jang Eq. 2: y = softmax((log pi + g) / tau) on the last axis, for given Gumbel noise ``g``.

    ``hard=True`` is the straight-through estimator (Jang Sec. 2.2): the value is the one-hot
    argmax of y (which is the Gumbel-Max sample of Eq. 1 for the same g), the gradient is y's.
    """
    y = torch.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return y
    z = F.one_hot(y.argmax(dim=-1), y.shape[-1]).to(y.dtype)
    return z - y.detach() + y  # forward: z; backward: dy


def categorical_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Categorical(softmax(logits)) || Uniform(K)) in closed form, summed over all but the first
    axis: sum_n sum_k pi_nk (log pi_nk + log K). ``logits`` [B, N, K] -> [B]."""
    log_pi = torch.log_softmax(logits, dim=-1)
    kl = (log_pi.exp() * (log_pi + math.log(logits.shape[-1]))).sum(dim=-1)
    return kl.reshape(kl.shape[0], -1).sum(dim=-1)


def temperature(
    step: int, tau0: float = 1.0, tau_min: float = 0.5, rate: float = 1e-4, every: int = 1000
) -> float:
    """Jang et al.'s annealing schedule tau = max(tau_min, tau0 * exp(-r t)) (Sec. 4.2 there:
    tau_min = 0.5, r in {1e-5, 1e-4}, updated every N in {500, 1000} steps).

    ``step`` t counts the optimizer steps already taken; tau changes only when t is a multiple of
    ``every``: tau(t) = max(tau_min, tau0 exp(-r * every * floor(t / every))). ``rate=0`` keeps
    tau = tau0 (a fixed temperature)."""
    t = every * (step // every)
    return max(tau_min, tau0 * math.exp(-rate * t))


# --- the model ------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The model's hyperparameters: the keyword arguments of :class:`Model`, as training flags."""

    num_latents: int = flag(30, "N: categorical latent variables (Jang et al.'s notebook: 30)")
    num_classes: int = flag(10, "K: classes of each latent variable")
    hidden: list[int] = flag([512, 256], "encoder hidden widths (the decoder mirrors them)")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Model(nn.Module):
    """Encoder log pi(x) [B, N, K] and decoder Bernoulli logits f(z) [B, 784] (module docstring)."""

    def __init__(
        self, num_latents: int = 30, num_classes: int = 10, hidden: list[int] | None = None
    ) -> None:
        super().__init__()
        self.num_latents, self.num_classes = num_latents, num_classes
        self.hidden = list(hidden if hidden is not None else [512, 256])
        latent = num_latents * num_classes
        self.encoder = _mlp([X_DIM, *self.hidden, latent])
        self.decoder = _mlp([latent, *reversed(self.hidden), X_DIM])

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return {
            "num_latents": self.num_latents,
            "num_classes": self.num_classes,
            "hidden": list(self.hidden),
        }

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        """Decoder output bias = logit(mean training pixel): an untrained decoder already draws
        the average digit (common practice; not in the paper)."""
        p = pixel_mean.reshape(-1).double().clamp(eps, 1 - eps)
        self.decoder[-1].bias.copy_(torch.logit(p).float())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log pi(x) of q(z | x): x [B, ...] -> logits [B, N, K]."""
        h = self.encoder(x.reshape(x.shape[0], -1))
        return h.view(x.shape[0], self.num_latents, self.num_classes)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., N, K] (one-hot or relaxed) -> Bernoulli logits [..., 784] of p(x | z)."""
        return self.decoder(z.flatten(-2))

    @staticmethod
    def log_px(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x | z) = sum_j log Bernoulli(x_j; sigmoid(l_j)); broadcasts x [B, 784]."""
        x = x.expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def relaxed_elbo(
        self,
        x: torch.Tensor,
        tau: float = 1.0,
        hard: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Eq. 4 per example: reconstruction with one Gumbel-softmax sample (or the
        straight-through one if ``hard``) and the closed-form categorical KL. Returns
        ``{"elbo", "recon", "kl"}``, each [B]."""
        x = x.reshape(x.shape[0], -1)
        logits = self.encode(x)
        g = sample_gumbel(logits.shape, generator, logits.dtype, logits.device)
        y = gumbel_softmax(logits, tau, g, hard=hard)
        recon = self.log_px(x, self.decode(y))
        kl = categorical_kl_uniform(logits)
        return {"elbo": recon - kl, "recon": recon, "kl": kl}

    def loss(
        self, x: torch.Tensor, y: torch.Tensor | None = None, tau: float = 1.0, hard: bool = False
    ) -> torch.Tensor:
        """The training objective: minus Eq. 4 averaged over the batch (labels ``y`` unused)."""
        return -self.relaxed_elbo(x, tau, hard)["elbo"].mean()

    def log_weights(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x) for k exact (Gumbel-Max, Eq. 1)
        samples z_i ~ q(z | x) of the discrete model: [k, B]."""
        x = x.reshape(x.shape[0], -1)
        log_pi = torch.log_softmax(self.encode(x), dim=-1)  # [B, N, K]
        g = sample_gumbel((k, *log_pi.shape), generator, log_pi.dtype, log_pi.device)
        z = gumbel_max(log_pi, g)  # [k, B, N, K] one-hot
        log_q = (z * log_pi).sum(dim=(-1, -2))
        log_prior = -self.num_latents * math.log(self.num_classes)
        return self.log_px(x, self.decode(z)) + log_prior - log_q

    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = EVAL_K, chunk: int = 50
    ) -> dict[str, torch.Tensor]:
        """Per-example test metrics of the discrete model, in nats:

        * ``nll_nats``: minus the IWAE bound with ``k`` exact samples (Burda et al. Eq. 8;
          Jang et al. evaluate with 1000), an upper bound on -log p(x) that tightens with k;
        * ``elbo``: the discrete ELBO, -KL + log p(x | z) averaged over 10 exact samples;
        * ``kl``: KL(q(z | x) || p(z)) in closed form.
        """
        x = x.reshape(x.shape[0], -1)
        log_ll = importance_sampled_log_likelihood(self.log_weights, x, k, chunk)
        logits = self.encode(x)
        kl = categorical_kl_uniform(logits)
        g = sample_gumbel((10, *logits.shape), None, logits.dtype, logits.device)
        recon = self.log_px(x, self.decode(gumbel_max(logits, g))).mean(0)
        return {"nll_nats": -log_ll, "elbo": recon - kl, "kl": kl}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder means for the most probable code argmax_z q(z | x): [B, 1, 28, 28]."""
        logits = self.encode(x)
        z = F.one_hot(logits.argmax(-1), self.num_classes).to(logits.dtype)
        return torch.sigmoid(self.decode(z)).view(x.shape[0], *IMAGE_SHAPE)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means (pixel probabilities) for z ~ p(z), uniform over each variable's K
        classes: ``n`` images [n, 1, 28, 28] in [0, 1]."""
        device = next(self.parameters()).device
        index = torch.randint(
            self.num_classes, (n, self.num_latents), generator=generator, device=device
        )
        z = F.one_hot(index, self.num_classes).float()
        return torch.sigmoid(self.decode(z)).view(n, *IMAGE_SHAPE)
