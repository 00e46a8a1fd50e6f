"""The MADE network: an MLP whose weights are masked so that output d sees only x_{<d}.

Notation follows Germain et al. (2015). Inputs carry degrees m^0(d) (the position of x_d in the
ordering, 1..D), hidden unit k of layer l carries a degree m^l(k) (the largest number of inputs it
may depend on), and the masks are built from those degrees:

    hidden layers   M^{W^l}_{k',k} = 1[m^l(k') >= m^{l-1}(k)]          (paper, Eq. 12)
    output layer    M^{V}_{d,k}    = 1[m^0(d)   >  m^L(k)]              (paper, Eq. 13)
    direct path     M^{A}_{d,d'}   = 1[m^0(d)   >  m^0(d')]             (strictly lower triangular
                                                                         in the ordering)

so that the product of the masks, M^V M^{W^L} ... M^{W^1}, is strictly lower triangular in the
ordering: output d has no path to any input at or after its own position (the autoregressive
property). Then

    x_hat_d = p(x_d = 1 | x_{<d}) = sigm(logit_d(x)),
    -log p(x) = sum_d -x_d log x_hat_d - (1 - x_d) log(1 - x_hat_d)    (chain rule, the NLL)

A model may own several "masks" (connectivity-agnostic training, paper Sec. 4.3; with
``order_agnostic=True`` each mask also has its own input ordering, order-agnostic training,
Sec. 4.2). Mask number ``i`` is
drawn from a generator seeded with ``(mask_seed, i)``, so a checkpoint only stores the seed and the
masks are rebuilt bit for bit. At test time the K masks form an ensemble: p(x) is the average of
the K probabilities, -log p(x) = -log (1/K) sum_i p_i(x).

Degrees and masks are computed on the CPU whatever the default device, so that a MADE can be built
under ``with torch.device("meta")`` (``shared_utils.checkpoints.load_model`` does, to check a
checkpoint's config before allocating anything). Training cycles through the masks, one per
minibatch; rebuilding a 2x500 + direct mask set takes 15-20% of a training step's time on one CPU
thread, so each mask index's masks are kept as uint8 (1 byte per weight; copying them into the float
buffers takes a sixth of the rebuild's time: ``python -m made.bench --parts masks``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.metrics import log_mean_exp

# Bytes of uint8 masks a MADE keeps (1 byte per weight and mask index: 1.6 MiB per index for
# 2x500 + direct, 50 MiB for 32 indices); indices beyond it are rebuilt at each use.
MASK_CACHE_BYTES = 256 * 2**20


def mask_generator(mask_seed: int, index: int) -> torch.Generator:
    """The generator that draws mask ``index`` of a model whose masks come from ``mask_seed``."""
    return torch.Generator().manual_seed(int(mask_seed) * 1_000_003 + int(index))


def made_degrees(
    num_inputs: int,
    hidden_sizes: Sequence[int],
    generator: torch.Generator,
    order_agnostic: bool = False,
) -> list[torch.Tensor]:
    """Degrees ``[m^0, m^1, ..., m^L]`` of the input and hidden units (paper Sec. 4).

    ``m^0`` is the input ordering: ``m^0(d)`` is the position (1..D) of input d; natural order
    unless ``order_agnostic``, then a uniformly random permutation. Hidden degrees are drawn
    uniformly from the integers ``[min_k m^{l-1}(k), D-1]``: never D (a unit seeing every input is
    useless to every conditional) and never below the smallest degree of the layer below (it would
    be connected to nothing).
    """
    if num_inputs < 2:
        raise ValueError("MADE needs at least 2 inputs")
    cpu = torch.device("cpu")  # explicit: also under a `with torch.device("meta")` block
    if order_agnostic:
        m0 = torch.randperm(num_inputs, generator=generator, device=cpu) + 1
    else:
        m0 = torch.arange(1, num_inputs + 1, device=cpu)
    degrees = [m0]
    for size in hidden_sizes:
        low = int(degrees[-1].min())
        degrees.append(torch.randint(low, num_inputs, (size,), generator=generator, device=cpu))
    return degrees


def made_masks(degrees: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Masks ``([M^{W^1}, ..., M^{W^L}, M^V], M^A)`` from degrees, shaped like ``nn.Linear`` weights.

    ``M^{W^l}[k', k] = m^l(k') >= m^{l-1}(k)`` (Eq. 12), ``M^V[d, k] = m^0(d) > m^L(k)`` (Eq. 13),
    ``M^A[d, d'] = m^0(d) > m^0(d')`` for the direct input-to-output connections.
    """
    m0 = degrees[0]
    masks = [
        (degrees[l][:, None] >= degrees[l - 1][None, :]).float() for l in range(1, len(degrees))
    ]
    masks.append((m0[:, None] > degrees[-1][None, :]).float())
    direct = (m0[:, None] > m0[None, :]).float()
    return masks, direct


class MaskedLinear(nn.Linear):
    """``y = b + (W ⊙ M) x``: a linear layer with a fixed binary connectivity mask (a buffer)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        # not persistent: masks are rebuilt from the mask seed, not stored in checkpoints
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)

    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask.copy_(mask)  # from any dtype and device (a no-op on the meta device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """MADE for D binary variables: ``forward(x)`` returns the D logits of p(x_d = 1 | x_{<d}).

    ``hidden_sizes``: widths of the hidden layers (the paper's MNIST models are thousands of units wide).
    ``num_masks``: how many connectivity patterns (and orderings, if ``order_agnostic``) the model
    cycles through in training and averages over at test time; 1 is a plain MADE.
    ``direct``: add the direct input-to-output connections ``(A ⊙ M^A) x`` to the output logits.
    """

    def __init__(
        self,
        num_inputs: int = 784,
        hidden_sizes: Sequence[int] = (500,),
        num_masks: int = 1,
        order_agnostic: bool = False,
        direct: bool = False,
        mask_seed: int = 0,
    ):
        super().__init__()
        if num_masks < 1:
            raise ValueError("num_masks must be >= 1")
        self.num_inputs = num_inputs
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.num_masks = num_masks
        self.order_agnostic = order_agnostic
        self.mask_seed = mask_seed
        sizes = [num_inputs, *self.hidden_sizes, num_inputs]
        self.layers = nn.ModuleList(
            MaskedLinear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)
        )
        self.direct = MaskedLinear(num_inputs, num_inputs, bias=False) if direct else None
        if self.direct is not None:
            nn.init.zeros_(self.direct.weight)  # start as the plain MADE; A is learned from 0
        self.register_buffer("ordering", torch.arange(1, num_inputs + 1), persistent=False)
        self.mask_index = -1
        self.mask_cache_bytes = MASK_CACHE_BYTES  # 0: rebuild the masks at every set_mask
        self._mask_cache: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.set_mask(0)

    def config(self) -> dict:
        """The constructor arguments: all a checkpoint needs to rebuild this model and its masks."""
        return {
            "num_inputs": self.num_inputs,
            "hidden_sizes": self.hidden_sizes,
            "num_masks": self.num_masks,
            "order_agnostic": self.order_agnostic,
            "direct": self.direct is not None,
            "mask_seed": self.mask_seed,
        }

    def degrees(self, index: int) -> list[torch.Tensor]:
        """Degrees of mask ``index`` (deterministic given ``mask_seed``)."""
        gen = mask_generator(self.mask_seed, index)
        return made_degrees(self.num_inputs, self.hidden_sizes, gen, self.order_agnostic)

    def masks(self, index: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Mask ``index``: (the masks of the layers, then of the direct connections if any; the
        ordering m^0). Kept as uint8 on the buffers' device up to ``mask_cache_bytes`` in all;
        beyond that built afresh (float, on the CPU) at every call."""
        if not 0 <= index < self.num_masks:
            raise ValueError(f"mask index {index} is outside 0..{self.num_masks - 1}")
        cache, device = self._mask_cache, self.ordering.device
        if index in cache and cache[index][1].device == device:
            return cache[index]
        if cache and next(iter(cache.values()))[1].device != device:
            cache.clear()  # the model moved to another device
        degrees = self.degrees(index)
        layer_masks, direct = made_masks(degrees)
        masks = [*layer_masks, direct] if self.direct is not None else layer_masks
        used = sum(m.numel() for kept, _ in cache.values() for m in kept)
        if used + sum(m.numel() for m in masks) > self.mask_cache_bytes:
            return masks, degrees[0]
        cache[index] = [m.to(device, torch.uint8) for m in masks], degrees[0].to(device)
        return cache[index]

    @torch.no_grad()
    def set_mask(self, index: int) -> None:
        """Install mask ``index`` (0 <= index < num_masks) in every layer."""
        if index == self.mask_index:
            return
        masks, ordering = self.masks(index)
        layers = [*self.layers, self.direct] if self.direct is not None else self.layers
        for layer, mask in zip(layers, masks, strict=True):
            layer.set_mask(mask)
        self.ordering.copy_(ordering)
        self.mask_index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``a_d`` with ``x_hat_d = sigm(a_d) = p(x_d = 1 | x_{<d})``; x is ``[B, D]``."""
        x = x.reshape(x.shape[0], -1)
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))  # h^l = g(b^l + (W^l ⊙ M^{W^l}) h^{l-1})
        logits = self.layers[-1](h)  # c + (V ⊙ M^V) h^L
        if self.direct is not None:
            logits = logits + self.direct(x)  # + (A ⊙ M^A) x
        return logits

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` per example with the current mask: minus the summed binary cross-entropy."""
        x = x.reshape(x.shape[0], -1)
        bce = F.binary_cross_entropy_with_logits(self(x), x, reduction="none")
        return -bce.sum(dim=1)

    @torch.no_grad()
    def ensemble_log_prob(self, x: torch.Tensor, masks: Sequence[int] | int) -> torch.Tensor:
        """``log (1/K) sum_i p_i(x)`` over the given mask indices (or the first K if an int)."""
        indices = list(range(masks)) if isinstance(masks, int) else list(masks)
        previous = self.mask_index
        per_mask = []
        for i in indices:
            self.set_mask(i)
            per_mask.append(self.log_prob(x))
        self.set_mask(previous)
        return log_mean_exp(torch.stack(per_mask), dim=0)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, mask: int | None = None
    ) -> torch.Tensor:
        """Ancestral sampling in the mask's ordering: D sequential passes, ``[n, D]`` in {0, 1}."""
        previous = self.mask_index
        if mask is not None:
            self.set_mask(mask)
        device = next(self.parameters()).device
        x = torch.zeros(n, self.num_inputs, device=device)
        order = torch.argsort(self.ordering)  # input indices in their sampling order
        for d in order.tolist():
            p = torch.sigmoid(self(x)[:, d])
            x[:, d] = torch.bernoulli(p, generator=generator)
        self.set_mask(previous)
        return x
