"""PixelCNN (van den Oord et al., ICML 2016) and Gated PixelCNN (van den Oord et al., NeurIPS 2016).

Both models factorise the likelihood of an image with the chain rule in raster-scan order
(Pixel RNN paper, Eq. 1):

    p(x) = prod_{i=1}^{n^2} p(x_i | x_1, ..., x_{i-1}),

and compute *all* the conditionals in one forward pass with convolutions whose receptive field is
restricted to the pixels before ``x_i``. For binary MNIST each conditional is a Bernoulli whose
logit is the network output at pixel ``i``.

* :class:`PixelCNN` masks the convolution kernels (Pixel RNN paper, Section 3.4, Figure 4): mask
  ``A`` (first layer) zeroes the centre and everything after it, mask ``B`` (later layers) keeps the
  centre. Stacking masked 3x3 convolutions leaves a *blind spot* above and to the right of the
  current pixel (Conditional PixelCNN paper, Section 2.2, Figure 1).
* :class:`GatedPixelCNN` replaces the ReLU by the gated activation (NeurIPS 2016, Eq. 2)

      y = tanh(W_{k,f} * x) ⊙ sigma(W_{k,g} * x),

  and splits every layer into a *vertical* stack (all rows above, any column) and a *horizontal*
  stack (the current row, left of the pixel), linked by a 1x1 convolution from vertical to
  horizontal (Figure 2). The vertical stack is shifted down one row before it feeds the horizontal
  one, so the two together see every earlier pixel: no blind spot. Class conditioning adds
  ``V^T h`` inside the gate (Eq. 4):

      y = tanh(W_{k,f} * x + V_{k,f}^T h) ⊙ sigma(W_{k,g} * x + V_{k,g}^T h).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _arguments(
    kind: str, channels: int, n_layers: int, first_kernel: int, kernel_size: int, n_classes: int
) -> dict[str, Any]:
    """The keyword arguments of :func:`build_model` for a model (a checkpoint's sidecar "model")."""
    return dict(
        kind=kind,
        channels=channels,
        n_layers=n_layers,
        first_kernel=first_kernel,
        kernel_size=kernel_size,
        n_classes=n_classes,
    )


# --------------------------------------------------------------------------------------------------
# Plain PixelCNN (Pixel RNN paper, Section 3.4 and Figure 5)
# --------------------------------------------------------------------------------------------------


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """``[k, k]`` 0/1 mask over a square kernel: 1 where the input pixel precedes the centre.

    Raster order: rows above the centre are allowed; on the centre row, pixels left of the centre
    are allowed; the centre itself is allowed only for mask ``B`` (Pixel RNN paper, Figure 4 (right),
    single colour channel).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1.0
    mask[c, :c] = 1.0
    if mask_type == "B":
        mask[c, c] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded square convolution whose kernel is multiplied by a causal mask A or B."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.register_buffer("mask", causal_mask(kernel_size, mask_type)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    """Residual block of the PixelCNN (Pixel RNN paper, Figure 5): 1x1 (h -> h/2), masked 3x3 B
    (h/2 -> h/2), 1x1 (h/2 -> h), each preceded by a ReLU, plus the identity."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        half = channels // 2
        self.reduce = nn.Conv2d(channels, half, 1)
        self.masked = MaskedConv2d(half, half, kernel_size, "B")
        self.expand = nn.Conv2d(half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(F.relu(x))
        h = self.masked(F.relu(h))
        h = self.expand(F.relu(h))
        return x + h


class PixelCNN(nn.Module):
    """Plain PixelCNN for binary images: 7x7 mask-A conv, residual mask-B blocks, two 1x1 convs.

    Returns Bernoulli logits ``[B, 1, H, W]``; the logit at pixel ``i`` depends only on
    ``x_1..x_{i-1}`` (minus the blind spot), so it parameterises ``p(x_i | x_<i)`` of Eq. 1.
    """

    def __init__(
        self,
        channels: int = 64,
        n_layers: int = 7,
        first_kernel: int = 7,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.n_classes = 0  # unconditional
        self._config = _arguments("pixelcnn", channels, n_layers, first_kernel, kernel_size, 0)
        self.first = MaskedConv2d(1, channels, first_kernel, "A")
        self.blocks = nn.ModuleList(ResidualBlock(channels, kernel_size) for _ in range(n_layers))
        self.head1 = nn.Conv2d(channels, channels, 1)
        self.head2 = nn.Conv2d(channels, 1, 1)
        # rows above a pixel that can reach its logit: k//2 per masked convolution
        self.receptive_rows = first_kernel // 2 + n_layers * (kernel_size // 2)

    def config(self) -> dict[str, Any]:
        """The keyword arguments of :func:`build_model` that rebuild this model (sidecar "model")."""
        return dict(self._config)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("the plain PixelCNN is unconditional; use kind='gated', n_classes=10")
        h = self.first(2.0 * x - 1.0)  # inputs {0,1} -> {-1,+1}, centred
        for block in self.blocks:
            h = block(h)
        return self.head2(F.relu(self.head1(F.relu(h))))


# --------------------------------------------------------------------------------------------------
# Gated PixelCNN (Conditional PixelCNN paper, Section 2.1-2.3 and Figure 2)
# --------------------------------------------------------------------------------------------------


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Shift a feature map down one row (zeros in row 0): row i then holds what row i-1 saw."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def gate(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Gated activation unit, Eq. 2: ``tanh(first half) * sigmoid(second half)`` of the channels
    (dimension ``dim``)."""
    f, g = x.chunk(2, dim=dim)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One layer of the Gated PixelCNN (Figure 2), with optional class conditioning (Eq. 4).

    * vertical stack: a ``(k//2 + 1) x k`` convolution over the current row and the ``k//2`` rows
      above (padded so the output keeps the size); its output at row ``r`` has seen rows ``<= r``.
    * vertical -> horizontal: the vertical pre-activations, shifted down one row (so row ``i`` only
      carries rows ``< i``), go through a 1x1 convolution and are added to the horizontal ones.
    * horizontal stack: a ``1 x (k//2 + 1)`` convolution over the pixel and the ``k//2`` pixels to its
      left; in the first layer the pixel itself is masked out (mask A). Residual connection and a
      1x1 convolution after the gate, as in Figure 2 (not in the first layer: its input is the
      1-channel image).
    * conditioning, Eq. 4: ``V^T h`` with ``h`` the one-hot label is an embedding lookup, added to the
      pre-activations of both stacks (a separate ``V`` for each stack and each layer).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        first: bool,
        n_classes: int = 0,
    ):
        super().__init__()
        k = kernel_size
        self.k = k
        self.first = first
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (k // 2 + 1, k))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, k // 2 + 1))
        if first:  # mask A on the horizontal stack: drop the kernel column at the current pixel
            mask = torch.ones(1, 1, 1, k // 2 + 1)
            mask[..., -1] = 0.0
            self.register_buffer("h_mask", mask)
        else:
            self.h_mask = None
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.residual = not first
        if n_classes > 0:
            self.v_cond = nn.Embedding(n_classes, 2 * channels)  # V_{k,f}, V_{k,g}, vertical stack
            self.h_cond = nn.Embedding(n_classes, 2 * channels)  # V_{k,f}, V_{k,g}, horizontal
        else:
            self.v_cond = self.h_cond = None

    def vertical(
        self, v: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical stack: returns its pre-activations (for the link) and its gated output."""
        k = self.k
        # pad k//2 rows on top, k//2 columns left and right, none below: row r sees rows <= r
        v_pre = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))
        v_gated = v_pre if y is None else v_pre + self.v_cond(y)[:, :, None, None]
        return v_pre, gate(v_gated)  # Eq. 2 / Eq. 4

    def horizontal(
        self, h: torch.Tensor, v_pre_above: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Horizontal stack, given the vertical pre-activations of the row above (already shifted)."""
        k = self.k
        h_weight = self.h_conv.weight if self.h_mask is None else self.h_conv.weight * self.h_mask
        # pad k//2 columns on the left only: pixel c sees columns c-k//2 .. c (.. c-1 with mask A)
        h_pre = F.conv2d(F.pad(h, (k // 2, 0, 0, 0)), h_weight, self.h_conv.bias)
        h_pre = h_pre + self.v_to_h(v_pre_above)
        if y is not None:
            h_pre = h_pre + self.h_cond(y)[:, :, None, None]
        h_new = self.h_out(gate(h_pre))  # Eq. 2 / Eq. 4, then the 1x1 convolution of Figure 2
        return h + h_new if self.residual else h_new

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if y is not None and self.v_cond is None:
            raise ValueError("this model was built without class conditioning (n_classes=0)")
        v_pre, v_new = self.vertical(v, y)
        # the link: shifted down one row, so row i of the horizontal stack only gets rows < i
        return v_new, self.horizontal(h, down_shift(v_pre), y)


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN for binary images, optionally class-conditional (``n_classes > 0``).

    The first layer uses a ``first_kernel`` x ``first_kernel`` receptive field (7 as in the PixelCNN),
    the others ``kernel_size`` (3). The output head (ReLU, 1x1, ReLU, 1x1) reads the horizontal
    stack and returns Bernoulli logits ``[B, 1, H, W]``. The vertical stack never reaches the output
    directly: it only enters through the shifted vertical-to-horizontal link, which is what keeps the
    model causal.
    """

    def __init__(
        self,
        channels: int = 64,
        n_layers: int = 7,
        first_kernel: int = 7,
        kernel_size: int = 3,
        n_classes: int = 0,
    ):
        super().__init__()
        self.n_classes = n_classes
        self._config = _arguments("gated", channels, n_layers, first_kernel, kernel_size, n_classes)
        self.layers = nn.ModuleList(
            GatedLayer(
                1 if i == 0 else channels,
                channels,
                first_kernel if i == 0 else kernel_size,
                first=i == 0,
                n_classes=n_classes,
            )
            for i in range(n_layers)
        )
        self.head1 = nn.Conv2d(channels, channels, 1)
        self.head2 = nn.Conv2d(channels, 1, 1)
        # rows above a pixel that can reach its logit: k//2 per vertical convolution, +1 for the
        # down-shift of the vertical-to-horizontal link
        self.receptive_rows = first_kernel // 2 + (n_layers - 1) * (kernel_size // 2) + 1

    def config(self) -> dict[str, Any]:
        """The keyword arguments of :func:`build_model` that rebuild this model (sidecar "model")."""
        return dict(self._config)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes > 0 and y is None:
            raise ValueError("this Gated PixelCNN is class-conditional: pass the labels y")
        v = h = 2.0 * x - 1.0
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.head(h)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head2(F.relu(self.head1(F.relu(h))))

    # -- for the reference sampler (crop=True): vertical stack once per row, horizontal per pixel --

    def row_links(self, x_above: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per layer, the vertical pre-activations of the last row of ``x_above`` ``[B,1,R,W]``.

        These are all the horizontal stack of the next row needs from the rows above (the link of
        Figure 2 after the down-shift); with ``R = 0`` (first row) they are zeros, as the shift's
        padding.
        """
        if x_above.shape[2] == 0:
            b, w = x_above.shape[0], x_above.shape[3]
            return [x_above.new_zeros(b, l.v_conv.out_channels, 1, w) for l in self.layers]
        links, v = [], 2.0 * x_above - 1.0
        for layer in self.layers:
            v_pre, v = layer.vertical(v, y)
            links.append(v_pre[:, :, -1:])
        return links

    def row_logits(
        self, x_row: torch.Tensor, links: list[torch.Tensor], y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[B,1,1,W]`` of one row ``x_row`` ``[B,1,1,W]`` given :meth:`row_links`."""
        h = 2.0 * x_row - 1.0
        for layer, link in zip(self.layers, links, strict=True):
            h = layer.horizontal(h, link, y)
        return self.head(h)


def build_model(kind: str = "gated", n_classes: int = 0, **kwargs: int) -> nn.Module:
    """The model a checkpoint's sidecar describes: ``build_model(**sidecar["model"])``.

    The keyword arguments are those of :meth:`PixelCNN.config` / :meth:`GatedPixelCNN.config`:
    ``kind`` ("pixelcnn" or "gated"), ``channels``, ``n_layers``, ``first_kernel``,
    ``kernel_size`` and ``n_classes`` (0: unconditional; > 0: class-conditional, gated only).
    Invalid values raise ValueError, unknown arguments TypeError.
    """
    channels, n_layers = kwargs.get("channels", 32), kwargs.get("n_layers", 7)
    kernels = kwargs.get("first_kernel", 7), kwargs.get("kernel_size", 3)
    if channels < 2 or n_layers < 1 or n_classes < 0:
        raise ValueError("channels must be at least 2, n_layers at least 1, n_classes >= 0")
    if any(k < 3 or k % 2 == 0 for k in kernels):
        raise ValueError(f"kernel sizes must be odd and at least 3, not {kernels}")
    if kind == "pixelcnn":
        if n_classes:
            raise ValueError(
                "the plain PixelCNN has no class-conditional variant: use kind 'gated'"
            )
        return PixelCNN(**kwargs)
    if kind == "gated":
        return GatedPixelCNN(n_classes=n_classes, **kwargs)
    raise ValueError(f"unknown kind {kind!r}: choose 'pixelcnn' or 'gated'")
