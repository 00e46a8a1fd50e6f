"""Fast sampling: every layer computed once per position, from cached activations.

The idea of Fast PixelCNN++ (P. Ramachandran et al., *Fast Generation for Convolutional
Autoregressive Models*, ICLR 2017 workshop, arXiv:1704.06001). The reference sampler
(:func:`pixelcnn.autoregressive.sample`) runs the network on the canvas for every pixel, although
nearly all of that work repeats the previous step: in a causal network the activation of a layer
at position ``p`` depends only on the pixels before ``p`` (that is what makes Eq. 1 of the Pixel RNN
paper one forward pass), so it is final once they are sampled and never changes afterwards. Keep
each layer's activations in a cache and compute each layer at the one position that becomes final
at each step, and an image costs about one forward pass instead of one per pixel.

How that maps onto the two networks of :mod:`pixelcnn.model`:

* :class:`~pixelcnn.model.PixelCNN`: a masked convolution's kernel splits into the rows above its
  centre, which see only rows that are complete when a row starts, and the centre row, which sees
  the pixels to the left (and, with mask B, the pixel itself). So when row ``r`` starts, the
  rows-above part of every masked convolution is one ordinary convolution for the whole row, over
  that layer's cached inputs; at each pixel only the centre-row part, the 1x1 convolutions and
  the ReLUs are computed, at that one position.
* :class:`~pixelcnn.model.GatedPixelCNN` (Figure 2 of the NeurIPS 2016 paper): the horizontal stack
  at ``(r, c)`` sees the vertical stack only through the link from row ``r - 1`` (the down-shift),
  and the vertical stack of row ``r - 1`` only sees rows up to ``r - 1``. So when row ``r`` starts,
  the vertical stack of row ``r - 1`` is computed for every layer (a convolution over the band of
  rows it reads), and at each pixel the horizontal stack is computed at ``(r, c)`` from the
  cached pixels to its left in the same row and that link.

Either way each layer is computed once at each position: an image costs about one forward pass,
plus the overhead of many small operations (the caches are channels-last so that a pixel's
window is a view, not a copy).

The draws from ``generator`` are those of the reference sampler (one Bernoulli per pixel, batch at
a time, in raster order), and the logits are the full network's up to the rounding of a different
summation order; the tests check that the samples are identical in float64 and the logits agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelcnn.model import GatedLayer, GatedPixelCNN, MaskedConv2d, PixelCNN, gate
from shared_utils.training import evaluating


class _Pointwise:
    """A 1x1 convolution applied at one position: ``[n, C_in] -> [n, C_out]``."""

    def __init__(self, conv: nn.Conv2d):
        self.weight = conv.weight[:, :, 0, 0].T.contiguous()
        self.bias = conv.bias

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, h, self.weight)


class _MaskedAt:
    """A :class:`~pixelcnn.model.MaskedConv2d` computed one position at a time from a cache of its
    input (channels-last, zero-padded like the convolution: p rows above, p columns a side).

    The causal mask splits the kernel in two: the ``p`` rows above the centre, which see only rows
    that are complete when a row starts, and the centre row, which sees the pixels to the left (and
    the pixel itself with mask B). So the rows-above part is an ordinary convolution over the band
    of rows above, run once per row for the whole row, and only the centre-row part (a matrix
    product with ``p`` or ``p + 1`` cached positions) is left for each pixel.
    """

    def __init__(self, conv: MaskedConv2d, n: int, height: int, width: int):
        k = conv.kernel_size[0]
        self.p = p = k // 2
        weight = conv.weight * conv.mask
        self.above = weight[:, :, :p]  # [C_out, C_in, p, k]: the rows above, every column
        centre = weight[:, :, p, : p + 1]  # [C_out, C_in, p + 1]: columns c-p .. c
        if conv.mask_type == "A":  # mask A: not the pixel itself
            centre = centre[:, :, :p]
        self.columns = centre.shape[2]
        self.centre = centre.transpose(1, 2).reshape(centre.shape[0], -1).T.contiguous()
        self.bias = conv.bias
        self.cache = weight.new_zeros(n, height + p, width + 2 * p, conv.in_channels)
        self.row, self.row_const = 0, None

    def start_row(self, r: int) -> None:
        """Rows ``r-p .. r-1`` are complete: their part of the output of row ``r``, all columns."""
        band = self.cache[:, r : r + self.p].permute(0, 3, 1, 2)  # [n, C_in, p, W + 2p]
        out = F.conv2d(band, self.above, self.bias)[:, :, 0]  # [n, C_out, W]
        self.row, self.row_const = r, out.transpose(1, 2).contiguous()

    def put(self, c: int, value: torch.Tensor) -> None:
        """Store the input ``[n, C_in]`` at column ``c`` of the current row."""
        self.cache[:, self.row + self.p, c + self.p] = value

    def __call__(self, c: int) -> torch.Tensor:
        """The convolution's output ``[n, C_out]`` at column ``c`` of the current row."""
        window = self.cache[:, self.row + self.p, c : c + self.columns]  # columns c-p .. c (c-1)
        return torch.addmm(self.row_const[:, c], window.flatten(1), self.centre)


class _PixelCNNSteps:
    """The plain PixelCNN one position at a time (7x7 mask A, residual 3x3 mask B blocks, head)."""

    def __init__(self, model: PixelCNN, n: int, height: int, width: int):
        self.first = _MaskedAt(model.first, n, height, width)  # its cache: the image, as 2x - 1
        self.blocks = [
            (_Pointwise(b.reduce), _MaskedAt(b.masked, n, height, width), _Pointwise(b.expand))
            for b in model.blocks
        ]
        self.head = (_Pointwise(model.head1), _Pointwise(model.head2))

    def start_row(self, r: int) -> None:
        self.first.start_row(r)
        for _, masked, _ in self.blocks:
            masked.start_row(r)

    def logit(self, r: int, c: int) -> torch.Tensor:
        h = self.first(c)  # mask A: the pixels before (r, c)
        for reduce, masked, expand in self.blocks:  # Pixel RNN paper, Figure 5
            masked.put(c, F.relu(reduce(F.relu(h))))  # 1x1 h -> h/2: the masked conv's input
            h = h + expand(F.relu(masked(c)))  # mask B 3x3 at (r, c), 1x1 h/2 -> h, residual
        head1, head2 = self.head
        return head2(F.relu(head1(F.relu(h))))

    def set_pixel(self, r: int, c: int, pixel: torch.Tensor) -> None:
        self.first.put(c, 2.0 * pixel - 1.0)  # inputs {0, 1} -> {-1, +1}, as in forward


class _GatedLayerSteps:
    """One :class:`~pixelcnn.model.GatedLayer`: its vertical stack a row at a time, its horizontal
    stack a pixel at a time. Its caches are channels-last (``[..., column, channel]``), so that the
    horizontal kernel's window at a pixel is a view that a matrix product reads without a copy."""

    def __init__(self, layer: GatedLayer, n: int, y: torch.Tensor | None, height: int, width: int):
        self.layer, self.p, self.width = layer, layer.k // 2, width
        c_in = layer.v_conv.in_channels
        weight = layer.h_conv.weight[:, :, 0]  # [2C, C_in, p + 1]: columns c-p .. c
        if layer.first:  # mask A: the first layer does not see the pixel itself (column c)
            weight = weight[:, :, :-1]
        self.h_columns = weight.shape[2]
        self.h_weight = weight.transpose(1, 2).reshape(weight.shape[0], -1).T.contiguous()
        self.link = _Pointwise(layer.v_to_h)
        self.h_out = _Pointwise(layer.h_out)
        # the vertical stack's input with its convolution's padding: p rows above, p columns a side
        self.v_in = weight.new_zeros(n, height + self.p, width + 2 * self.p, c_in)
        # the horizontal stack's input in the current row, with p zero columns on the left
        self.h_in = weight.new_zeros(n, width + self.p, c_in)
        # Eq. 4: V^T h is a per-image constant of each stack (zero for an unconditional model)
        self.v_label = 0.0 if y is None else layer.v_cond(y)[:, None, :]
        self.h_const = layer.h_conv.bias + (0.0 if y is None else layer.h_cond(y)[:, None, :])
        self.row_const = None  # [n, W, 2C]: what the current row's horizontal stack adds

    def vertical_row(self, r: int) -> torch.Tensor | None:
        """Run the vertical stack on row ``r`` (complete now); return its gated output ``[n, W, C]``
        (the next layer's vertical input) and keep the link into row ``r + 1``."""
        n = self.h_in.shape[0]
        if r < 0:  # row 0: the down-shift brings zeros, and the 1x1 link turns them into its bias
            self.row_const = (self.link.bias + self.h_const).expand(n, self.width, -1).contiguous()
            return None
        band = self.v_in[:, r : r + self.p + 1].permute(0, 3, 1, 2)  # rows r-p .. r
        v_pre = self.layer.v_conv(band)[:, :, 0].transpose(1, 2)  # [n, W, 2C]
        link = self.link(v_pre.reshape(n * self.width, -1)).view(n, self.width, -1)
        self.row_const = link + self.h_const  # the vertical -> horizontal 1x1 convolution
        return gate(v_pre + self.v_label, dim=-1)  # Eq. 2 / Eq. 4

    def put_vertical(self, r: int, v: torch.Tensor) -> None:
        self.v_in[:, r + self.p, self.p : self.p + self.width] = v

    def put_horizontal(self, c: int, h: torch.Tensor) -> None:
        self.h_in[:, c + self.p] = h

    def horizontal(self, c: int) -> torch.Tensor:
        """The horizontal stack's output ``[n, C]`` at column ``c`` of the current row."""
        window = self.h_in[:, c : c + self.h_columns]  # columns c-p .. c (c-1 with mask A)
        pre = torch.addmm(self.row_const[:, c], window.flatten(1), self.h_weight)
        out = self.h_out(gate(pre, dim=-1))  # Eq. 2 / Eq. 4, then the 1x1 convolution of Figure 2
        return self.h_in[:, c + self.p] + out if self.layer.residual else out


class _GatedSteps:
    """The Gated PixelCNN: the vertical stacks once per row, the horizontal stacks once per pixel."""

    def __init__(
        self, model: GatedPixelCNN, n: int, y: torch.Tensor | None, height: int, width: int
    ):
        self.layers = [_GatedLayerSteps(layer, n, y, height, width) for layer in model.layers]
        self.head = (_Pointwise(model.head1), _Pointwise(model.head2))

    def start_row(self, r: int) -> None:
        """Row ``r - 1`` is complete: its vertical stack, layer by layer, gives the links of row r."""
        for layer, above in zip(self.layers, self.layers[1:] + [None], strict=True):
            v = layer.vertical_row(r - 1)
            if above is not None and v is not None:
                above.put_vertical(r - 1, v)

    def logit(self, r: int, c: int) -> torch.Tensor:
        for layer, above in zip(self.layers, self.layers[1:] + [None], strict=True):
            h = layer.horizontal(c)
            if above is not None:
                above.put_horizontal(c, h)
        head1, head2 = self.head
        return head2(F.relu(head1(F.relu(h))))

    def set_pixel(self, r: int, c: int, pixel: torch.Tensor) -> None:
        first, value = self.layers[0], 2.0 * pixel - 1.0  # inputs {0, 1} -> {-1, +1}
        first.v_in[:, r + first.p, c + first.p] = value  # both stacks of the first layer read it
        first.put_horizontal(c, value)


def fast_sample(
    model: nn.Module,
    n: int,
    y: torch.Tensor | None = None,
    shape: tuple[int, int] = (28, 28),
    generator: torch.Generator | None = None,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` images ``[n, 1, H, W]`` in {0, 1}, as :func:`pixelcnn.autoregressive.sample` does
    (the same draws from ``generator``), at about the cost of one forward pass per image.

    ``return_logits=True`` also returns the logit of every pixel's conditional ``p(x_i | x_<i)``
    as it was used to draw the pixel (``model(x, y)`` on the finished samples gives the same).
    """
    height, width = shape
    # inference mode: no autograd bookkeeping at all, a measured 10-20% of these many small ops
    with torch.inference_mode(), evaluating(model):
        if isinstance(model, GatedPixelCNN):
            if (model.n_classes > 0) != (y is not None):
                raise ValueError("pass labels y exactly when the model is class-conditional")
            steps = _GatedSteps(model, n, y, height, width)
        elif isinstance(model, PixelCNN):
            if y is not None:
                raise ValueError("the plain PixelCNN is unconditional: pass no labels")
            steps = _PixelCNNSteps(model, n, height, width)
        else:
            raise TypeError(f"fast_sample knows PixelCNN and GatedPixelCNN, not {type(model)}")
        param = next(model.parameters())
        x = torch.zeros(n, 1, height, width, dtype=param.dtype, device=param.device)
        logits = torch.zeros_like(x)
        for r in range(height):
            steps.start_row(r)
            for c in range(width):
                logit = steps.logit(r, c)  # [n, 1]: p(x_rc | x_<rc), Eq. 1
                pixel = torch.bernoulli(torch.sigmoid(logit), generator=generator)
                x[:, :, r, c] = pixel
                logits[:, :, r, c] = logit
                steps.set_pixel(r, c, pixel)
    x, logits = x.clone(), logits.clone()  # ordinary tensors again (inference ones refuse autograd)
    return (x, logits) if return_logits else x
