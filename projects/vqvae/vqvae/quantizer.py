"""The vector-quantisation bottleneck of VQ-VAE (van den Oord et al., 2017, section 3.1-3.2).

Origin: written for dgm-course (MIT licence).

Notation of the paper. The encoder gives ``z_e(x)``, one D-dimensional vector per position of a
grid; the codebook holds K embeddings ``e_1, ..., e_K`` in R^D. Each vector is replaced by its
nearest embedding:

    q(z = k | x) = 1 if k = argmin_j ||z_e(x) - e_j||_2, else 0                          (Eq. 1)
    z_q(x) = e_k,  k = argmin_j ||z_e(x) - e_j||_2                                        (Eq. 2)

The argmin has no gradient; the straight-through estimator copies the decoder's gradient at
``z_q`` onto ``z_e`` (section 3.2): in the forward pass ``z_q``, in the backward pass the
identity, written ``z_e + sg[z_q - z_e]`` below. The training objective is

    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta ||z_e(x) - sg[e]||^2              (Eq. 3)

(with the sign of the first term flipped for minimisation): the codebook loss moves the chosen
embeddings toward the encoder outputs; the commitment loss (beta = 0.25 in the paper) keeps the
encoder outputs close to their embeddings. ``sg`` is the stop-gradient (``.detach()``).

The paper's appendix A.1 replaces the codebook loss by exponential moving averages: with n_i the
number of encoder outputs {z_e_{i,j}} assigned to code i in a minibatch and gamma the decay,

    N_i <- gamma N_i + (1 - gamma) n_i                                                   (Eq. 6)
    m_i <- gamma m_i + (1 - gamma) sum_j z_e_{i,j}                                       (Eq. 7)
    e_i <- m_i / N_i                                                                      (Eq. 8)

Not in the paper: codes that no encoder output chooses receive no gradient (and no EMA update)
and stay dead. ``restart_dead_codes`` re-initialises every code unused since its last call with
an encoder output of the current batch, a common remedy (e.g. Dhariwal et al., "Jukebox", 2020,
random restarts), drawn k-means++-style (Arthur and Vassilvitskii, 2007): far from the codebook is
likelier. The README and the notebook measure the codebook usage with and without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nearest_code(z_e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Eq. 1: the index k of the nearest embedding, for each row of ``z_e`` [N, D] -> [N]."""
    # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; the argmin does not need ||z||^2
    distances = (codebook * codebook).sum(1)[None, :] - 2.0 * z_e @ codebook.t()
    return distances.argmin(dim=1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward: ``z_q``; backward: the identity to ``z_e`` (section 3.2), ``z_e + sg[z_q - z_e]``."""
    return z_e + (z_q - z_e).detach()


def codebook_loss(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Eq. 3, second term: ``||sg[z_e(x)] - e||^2``, mean over positions and dimensions.

    Its gradient reaches only the codebook."""
    return F.mse_loss(z_q, z_e.detach())


def commitment_loss(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Eq. 3, third term without beta: ``||z_e(x) - sg[e]||^2``, mean over positions and
    dimensions. Its gradient reaches only the encoder."""
    return F.mse_loss(z_e, z_q.detach())


class VectorQuantizer(nn.Module):
    """K embeddings of dimension D, nearest-neighbour lookup, straight-through gradient.

    ``ema=False``: the embeddings are parameters trained by the codebook loss (Eq. 3).
    ``ema=True``: they are buffers updated in training mode by Eq. 6-8 (decay ``gamma``), and the
    codebook loss is not used (its value is still reported).
    """

    def __init__(self, num_codes: int, code_dim: int, ema: bool = False, gamma: float = 0.99):
        super().__init__()
        self.num_codes, self.code_dim, self.ema, self.gamma = num_codes, code_dim, ema, gamma
        init = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("embedding", init)
            self.register_buffer("ema_count", torch.ones(num_codes))  # N_i (Eq. 6)
            self.register_buffer("ema_sum", init.clone())  # m_i (Eq. 7); e_i = m_i / N_i
        else:
            self.embedding = nn.Parameter(init)
        # how often each code was chosen in training since the last restart_dead_codes call
        self.register_buffer("usage", torch.zeros(num_codes))

    @torch.no_grad()
    def ema_update(self, z_e: torch.Tensor, codes: torch.Tensor) -> None:
        """Eq. 6-8 for the encoder outputs ``z_e`` [N, D] assigned to ``codes`` [N]."""
        one_hot = F.one_hot(codes, self.num_codes).type_as(z_e)  # [N, K]
        n = one_hot.sum(0)  # n_i
        sums = one_hot.t() @ z_e  # sum_j z_e_{i,j}, [K, D]
        self.ema_count.mul_(self.gamma).add_(n, alpha=1 - self.gamma)  # Eq. 6
        self.ema_sum.mul_(self.gamma).add_(sums, alpha=1 - self.gamma)  # Eq. 7
        self.embedding.copy_(self.ema_sum / self.ema_count[:, None])  # Eq. 8

    def forward(self, z_e: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise ``z_e`` [B, D, H, W]: the straight-through ``z_q`` [B, D, H, W], the codes
        [B, H, W] and the two loss terms of Eq. 3 (scalars)."""
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)  # [B*H*W, D]
        codes = nearest_code(flat.detach(), self.embedding)  # Eq. 1
        if self.training:
            self.usage += torch.bincount(codes, minlength=self.num_codes).to(self.usage)
            if self.ema:
                self.ema_update(flat.detach(), codes)
        z_q = F.embedding(codes, self.embedding)  # Eq. 2
        out = {
            "codebook_loss": codebook_loss(flat, z_q),
            "commitment_loss": commitment_loss(flat, z_q),
            "codes": codes.reshape(b, h, w),
        }
        z_q = straight_through(flat, z_q)
        out["z_q"] = z_q.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return out

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``codes`` [B, H, W] as a map [B, D, H, W] (for decoding samples)."""
        return F.embedding(codes, self.embedding).permute(0, 3, 1, 2)

    @torch.no_grad()
    def restart_dead_codes(self, z_e: torch.Tensor, generator: torch.Generator | None) -> int:
        """Give every code unused since the last call an encoder output of the current batch (a
        row of ``z_e`` [N, D]) as its embedding; reset the usage counts. Returns how many codes
        were restarted.

        The rows are drawn with probability proportional to their squared distance to the
        nearest embedding (as k-means++ seeds k-means): rows that the codebook already covers
        (on MNIST, the many identical background positions) would give duplicate codes that
        die again at once."""
        dead = (self.usage == 0).nonzero().flatten()
        if len(dead):
            codes = nearest_code(z_e, self.embedding)
            weights = (z_e - self.embedding[codes]).pow(2).sum(1).double().cpu()
            if not weights.sum() > 0:
                weights = torch.ones_like(weights)
            rows = torch.multinomial(weights, len(dead), replacement=True, generator=generator)
            fresh = z_e[rows.to(z_e.device)].to(self.embedding)
            self.embedding.data[dead] = fresh
            if self.ema:
                self.ema_count[dead] = 1.0
                self.ema_sum[dead] = fresh
        self.usage.zero_()
        return len(dead)


def usage_and_perplexity(codes: torch.Tensor, num_codes: int) -> tuple[int, float]:
    """How many distinct codes ``codes`` uses, and the perplexity exp(H) of their frequencies."""
    counts = torch.bincount(codes.flatten(), minlength=num_codes).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return int((counts > 0).sum()), float(entropy.exp())
