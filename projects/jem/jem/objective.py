"""The training objectives: contrastive divergence with SGLD samples (IGEBM) and JEM's hybrid.

Origin: written for dgm-course (MIT licence).

Maximum likelihood for an EBM p_theta(x) = exp(-E_theta(x)) / Z(theta) has the gradient

    d log p_theta(x) / d theta = E_{x' ~ p_theta}[dE_theta(x')/d theta] - dE_theta(x)/d theta
                                                                   (JEM Eq. 2, IGEBM Sec. 2.1)

whose intractable expectation is estimated with samples x' of p_theta drawn by short-run SGLD
from a replay buffer (sgld.py). The loss whose gradient this is, with IGEBM's energy
regularisation (IGEBM Algorithm 1, Sec. 3.3),

    L_gen = mean E_theta(x+) - mean E_theta(x-) + alpha * mean(E_theta(x+)^2 + E_theta(x-)^2)

x+ the data, x- the SGLD samples (held fixed: no gradient flows through the sampler). The
squared-energy term keeps the energies near zero; without it the energies of data and samples
can drift apart without bound, which is how EBM training diverges.

JEM (Sec. 4, Eq. 9) factorises log p_theta(x, y) = log p_theta(x) + log p_theta(y|x) and trains
both: the cross-entropy of the softmax classifier for log p(y|x) plus L_gen for log p(x), with
E_theta(x) = -LogSumExp_y f_theta(x)[y] (JEM Eq. 7):

    L_JEM = CE(f_theta(x+), y) + L_gen.

The plain classifier that the evaluation compares against is the same network trained on the
cross-entropy alone.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .model import IMAGE_SHAPE, Model
from .sgld import ReplayBuffer, sgld

# JEM's recipe (Grathwohl et al. 2020, Sec. 5 and appendix): SGLD from a replay buffer.
JEM_BUFFER_SIZE = 10_000  # |B|: past samples kept
JEM_REINIT = 0.05  # rho: probability that a chain starts from fresh uniform noise
JEM_SGLD_STEPS = 20  # eta: SGLD steps per training iteration
JEM_SGLD_STEP_SIZE = 1.0  # alpha: gradient step of SGLD
JEM_SGLD_NOISE = 0.01  # sigma: standard deviation of SGLD's noise
JEM_DATA_NOISE = 0.03  # Gaussian noise added to the training images (JEM appendix)

# IGEBM (Du & Mordatch 2019, Sec. 3.1 and Algorithm 1): the same buffer scheme, and the
# squared-energy regularisation with weight alpha = 1.
IGEBM_REINIT = 0.05  # 5 % of the chains start from uniform noise
IGEBM_ENERGY_REG = 1.0  # alpha of alpha * (E(x+)^2 + E(x-)^2)

OBJECTIVES = ("jem", "igebm", "classifier")


def generative_loss(
    e_data: torch.Tensor, e_samples: torch.Tensor, energy_reg: float
) -> torch.Tensor:
    """L_gen: contrastive divergence mean E(x+) - mean E(x-) plus energy_reg * mean(E(x+)^2 +
    E(x-)^2) (IGEBM Algorithm 1)."""
    cd = e_data.mean() - e_samples.mean()
    return cd + energy_reg * (e_data.pow(2).mean() + e_samples.pow(2).mean())


def draw_negatives(
    model: Model,
    buffer: ReplayBuffer,
    batch: int,
    generator: torch.Generator,
    steps: int,
    step_size: float,
    noise: float,
) -> torch.Tensor:
    """x-: ``batch`` short-run SGLD chains on E_theta started from the replay buffer (a fraction
    rho from fresh noise), their ends written back into the buffer (IGEBM Sec. 3.1)."""
    start, indices, _ = buffer.draw(batch, generator)
    device = next(model.parameters()).device
    samples = sgld(model.energy, start.to(device), steps, step_size, noise, generator)
    buffer.write_back(indices, samples)
    return samples


def hybrid_loss(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None,
    x_neg: torch.Tensor | None,
    energy_reg: float,
    objective: str,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of ``objective`` on data x (labels y) and SGLD samples x_neg, and its parts:

    * "classifier": CE(f(x), y);
    * "igebm": L_gen on E(x) = -LogSumExp f(x) (no labels);
    * "jem": CE(f(x), y) + L_gen (JEM Eq. 9).

    Data and samples go through the network in one batch (the same weights see both)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    n = x.shape[0]
    inputs = x if x_neg is None or objective == "classifier" else torch.cat([x, x_neg])
    logits = model(inputs)
    logits_data = logits[:n]
    stats: dict[str, float] = {}
    loss = torch.zeros((), device=x.device)
    if objective in ("classifier", "jem"):
        ce = F.cross_entropy(logits_data, y)
        loss = loss + ce
        stats["ce"] = ce.item()
        stats["train_acc"] = (logits_data.argmax(1) == y).float().mean().item()
    e_data = -torch.logsumexp(logits_data, dim=1)  # JEM Eq. 7
    stats["e_data"] = e_data.mean().item()
    if objective in ("igebm", "jem"):
        e_samples = -torch.logsumexp(logits[n:], dim=1)
        gen = generative_loss(e_data, e_samples, energy_reg)
        loss = loss + gen
        stats["gen"] = gen.item()
        stats["e_samples"] = e_samples.mean().item()
    stats["loss"] = loss.item()
    return loss, stats


def new_buffer(size: int, reinit: float, generator: torch.Generator) -> ReplayBuffer:
    """A replay buffer of ``size`` images, filled with uniform noise."""
    return ReplayBuffer(size, IMAGE_SHAPE, reinit, generator)
