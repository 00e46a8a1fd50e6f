"""The prior p(z) over the 7x7 grid of codes: a small causal transformer.

Origin: written for dgm-course (MIT licence).

The paper fits an autoregressive prior to the codes of the training set after the VQ-VAE is
trained (section 3.2: "we fit an autoregressive distribution over z, p(z), so that we can generate
x via ancestral sampling"; a PixelCNN for images). Here the grid is read in raster order,
z = (z_1, ..., z_L) with L = 7 x 7 = 49, and

    p(z) = prod_{l=1}^{L} p(z_l | z_1, ..., z_{l-1})

with each conditional a softmax over the K codes computed by a decoder-only transformer (causal
self-attention; a start token stands in front of z_1). A transformer instead of a Gated PixelCNN:
on a 7x7 grid it has no blind spot to worry about, and cached keys and values make ancestral
sampling cost one token's forward pass per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, l, d = t.shape
        return t.reshape(b, l, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``x`` [B, L, dim]. Without ``cache``: causal attention over the L positions. With a
        cache (a list, empty at the first step): ``x`` is the next position only; its keys and
        values are appended and it attends to every cached position."""
        b, l, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
            a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, l, d))
        return x + self.mlp(self.ln2(x))


class TransformerPrior(nn.Module):
    """p(z_l | z_<l) for a sequence of L codes in {0, ..., K - 1}."""

    def __init__(self, num_codes: int, length: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.token = nn.Embedding(num_codes + 1, dim)  # index K: the start token
        self.position = nn.Parameter(torch.zeros(length, dim))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    def inputs(self, z: torch.Tensor) -> torch.Tensor:
        """The transformer's inputs for codes ``z`` [B, L]: embeddings of (start, z_1, ...,
        z_{L-1}) plus positions, [B, L, dim]; position l sees z_<l only through them."""
        start = torch.full_like(z[:, :1], self.num_codes)
        return self.token(torch.cat([start, z[:, :-1]], dim=1)) + self.position[: z.shape[1]]

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Inputs [B, L, dim] -> logits [B, L, K] (causal: output l reads inputs 0..l)."""
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` [B, L] codes -> logits [B, L, K] of p(z_l | z_<l) (teacher forcing)."""
        return self.trunk(self.inputs(z))

    def next_logits(
        self, previous: torch.Tensor, l: int, caches: list[list[torch.Tensor]]  # noqa: E741
    ) -> torch.Tensor:
        """Logits [B, K] of p(z_l | z_<l) given the code before it, ``previous`` [B] (the start
        token K for l = 0), the keys and values of positions < l being in ``caches``."""
        h = self.token(previous[:, None]) + self.position[l]
        for block, cache in zip(self.blocks, caches, strict=True):
            h = block(h, cache)
        return self.head(self.ln(h[:, 0]))

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        """-log p(z) in nats per sequence, ``z`` [B, L] -> [B]."""
        logits = self.logits(z)
        return F.cross_entropy(logits.transpose(1, 2), z, reduction="none").sum(1)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Ancestral sampling: z_l ~ p(z_l | z_<l) for l = 1..L, keys and values cached -> [n, L]."""
        device = self.position.device
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        token = torch.full((n,), self.num_codes, dtype=torch.long, device=device)
        z = torch.empty(n, self.length, dtype=torch.long, device=device)
        for l in range(self.length):  # noqa: E741 - the paper's index
            logits = self.next_logits(token, l, caches) / temperature
            probs = torch.softmax(logits.float(), dim=1)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            z[:, l] = token
        return z
