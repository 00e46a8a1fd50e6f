"""Glow's invertible layers (Kingma & Dhariwal 2018, Sec. 3 and Table 1).

Every layer is a bijection of tensors ``[B, C, H, W]`` with a tractable Jacobian:

* ``forward(x) -> (y, logdet)``, where ``logdet`` ``[B]`` is log|det dy/dx| of each example;
* ``inverse(y) -> x``.

A *step of flow* (Fig. 2a) is ``ActNorm -> InvConv1x1 (or InvConv1x1LU) -> Coupling``; Table 1
gives the three functions, their inverses and their log-determinants:

==========================  ======================================  ==============================
layer                       forward                                 log|det J|
==========================  ======================================  ==============================
actnorm (Sec. 3.1)          y = s * (x + b)   (per channel)          h w sum log|s|
invertible 1x1 conv (3.2)   y_ij = W x_ij     (every pixel)          h w log|det W|
  LU form (Eq. 10)          W = P L (U + diag(s))                    h w sum log|s|
affine coupling (3.3)       x_a, x_b = split(x);                     sum log|s|
                            (t, s) = NN(x_a); y_b = s * (x_b + t)
==========================  ======================================  ==============================

(``s * (x + t)`` rather than Table 1's ``s * x + t``: the official code's order; both are affine
maps with the same log-determinant.) ``Squeeze`` (the multi-scale architecture of Dinh et al.'s
RealNVP, Glow Fig. 2b) reshapes 2x2 pixel blocks into channels, and ``Split`` factors out half of
the channels with a learned conditional Gaussian prior, written here as an affine flow onto a
standard normal (see its docstring); ``LearnedPrior`` does the same for the top latent.

Deviations from the official code (openai/glow, ``model.py``), all made to keep the layers small and
exact: ActNorm's log-scale is a plain parameter (the official code multiplies it by a
``logscale_factor`` of 3); convolutions pad with zeros (the official code adds a channel that marks
the padding, ``add_edge``); the log-determinants are computed in the layers' dtype except that of
the plain 1x1 convolution, computed in float64 as in the official code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _per_example(value: torch.Tensor, batch: int) -> torch.Tensor:
    """A log-determinant that is the same for every example, as a ``[batch]`` tensor."""
    return value.reshape(1).expand(batch)


def random_rotation(num_channels: int) -> torch.Tensor:
    """A random orthogonal matrix (Q of the QR decomposition of a Gaussian matrix): the 1x1
    convolution's initial weight (Sec. 3.2: "a random rotation matrix", log|det W| = 0)."""
    q, _ = torch.linalg.qr(torch.randn(num_channels, num_channels))
    return q


class ActNorm(nn.Module):
    """Activation normalisation (Sec. 3.1): y = s * (x + b) with a scale and a bias per channel.

    ``s = exp(logs)``. **Data-dependent initialisation**: the first forward pass in training mode
    sets ``b = -mean(x)`` and ``s = 1 / std(x)`` per channel over the batch and the pixels, so that
    the post-actnorm activations of that first minibatch have zero mean and unit variance; from
    then on b and s are ordinary parameters. Whether that has happened is the buffer
    ``initialized`` (0 or 1), so it travels in the state dict: a model loaded from a checkpoint,
    or a resumed run, is never initialised again.

    Log-determinant (Table 1): h * w * sum(log|s|) = h * w * sum(logs).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.register_buffer("initialized", torch.zeros(1, dtype=torch.uint8))
        # A Python copy of the buffer, so that an initialised layer's forward pass reads no tensor
        # value (torch.compile traces it without a graph break). Set from the buffer on load.
        self._known_initialized = False

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """The data-dependent initialisation on the batch ``x``: post-actnorm zero mean and unit
        variance per channel."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, correction=0)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(1)
        self._known_initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        flag = state_dict.get(prefix + "initialized")
        self._known_initialized = flag is not None and bool(flag.reshape(-1)[0].item())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self._known_initialized:
            if bool(self.initialized.item()):
                self._known_initialized = True
            else:
                self.initialize(x.detach())
        y = (x + self.bias) * torch.exp(self.logs)
        logdet = x.shape[2] * x.shape[3] * self.logs.sum()
        return y, _per_example(logdet, x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution (Sec. 3.2), W a free C x C matrix: y_ij = W x_ij at every pixel.

    A learned generalisation of a permutation of the channels. Log-determinant (Table 1):
    h * w * log|det W|, computed with ``slogdet`` in float64 (O(C^3)). W starts as a random
    rotation (log|det W| = 0).
    """

    def __init__(self, num_channels: int, weight: torch.Tensor | None = None):
        super().__init__()
        w = random_rotation(num_channels) if weight is None else weight.detach().clone()
        self.weight = nn.Parameter(w)

    def weight_matrix(self) -> torch.Tensor:
        """W, ``[C, C]``."""
        return self.weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight
        logabsdet = torch.linalg.slogdet(w.double())[1].to(x.dtype)
        y = F.conv2d(x, w.view(*w.shape, 1, 1))
        return y, _per_example(x.shape[2] * x.shape[3] * logabsdet, x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight.double()).to(y.dtype)
        return F.conv2d(y, w_inv.view(*w_inv.shape, 1, 1))


class InvConv1x1LU(nn.Module):
    """Invertible 1x1 convolution in the LU-decomposed parameterisation (Sec. 3.2, Eq. 10):

        W = P L (U + diag(s)),

    P a fixed permutation matrix, L lower triangular with ones on the diagonal, U strictly upper
    triangular, s a vector; with s = sign(s) * exp(log|s|) and sign(s) fixed, as in the official
    code, the parameters are L, U and log|s|. Then log|det W| = sum(log|s|), so the
    log-determinant is h * w * sum(log|s|) (O(C) instead of O(C^3)). Initialised by decomposing a
    random rotation (or ``weight``, for comparisons with :class:`InvConv1x1`).
    """

    def __init__(self, num_channels: int, weight: torch.Tensor | None = None):
        super().__init__()
        w = random_rotation(num_channels) if weight is None else weight.detach().clone()
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        mask = torch.tril(torch.ones(num_channels, num_channels, dtype=w.dtype), -1)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", mask)
        self.register_buffer("eye", torch.eye(num_channels, dtype=w.dtype))
        self.lower = nn.Parameter(lower * mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight_matrix(self) -> torch.Tensor:
        """The assembled W = P L (U + diag(s)) of Eq. 10, ``[C, C]``."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight_matrix()
        y = F.conv2d(x, w.view(*w.shape, 1, 1))
        return y, _per_example(x.shape[2] * x.shape[3] * self.log_s.sum(), x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight_matrix().double()).to(y.dtype)
        return F.conv2d(y, w_inv.view(*w_inv.shape, 1, 1))


class ZeroConv2d(nn.Module):
    """3x3 convolution initialised to output zero, with a learned per-channel output scale
    exp(3 * logs) (the official code's ``conv2d_zeros``). Zero initialisation (Sec. 3.3): the last
    layer of each NN() starts at zero, so each coupling starts as a fixed simple map."""

    def __init__(self, in_channels: int, out_channels: int, logscale_factor: float = 3.0):
        super().__init__()
        self.logscale_factor = logscale_factor
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(self.logs * self.logscale_factor)


class CouplingNN(nn.Module):
    """NN() of the coupling layer (Sec. 3.3, Fig. 2 caption; official ``f``): a 3x3 convolution,
    ActNorm, ReLU, a 1x1 convolution, ActNorm, ReLU, and a zero-initialised 3x3 convolution.
    The paper uses 512 hidden channels; a CPU-sized model uses fewer (``hidden``)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.norm1 = ActNorm(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.norm2 = ActNorm(hidden)
        self.conv3 = ZeroConv2d(hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x))[0])
        h = F.relu(self.norm2(self.conv2(h))[0])
        return self.conv3(h)


COUPLINGS = ("affine", "additive")


class Coupling(nn.Module):
    """Affine (or additive) coupling layer (Sec. 3.3, Table 1).

    x_a, x_b = the first C//2 channels and the rest; x_a passes unchanged and conditions the map
    of x_b:

    * ``affine``: (t, raw) = NN(x_a) (interleaved channels, as in the official code),
      s = sigmoid(raw + 2), y_b = s * (x_b + t); log-determinant sum(log s) over x_b's entries.
    * ``additive`` (Dinh et al.'s NICE; Glow's Sec. 5.1 ablation): y_b = x_b + NN(x_a);
      log-determinant 0.

    **The scale.** Table 1 writes s = exp(log s). We use the official code's s = sigmoid(raw + 2):
    a scale in (0, 1) cannot blow up the activations (the inverse, used only for sampling, divides
    by s), which keeps training stable at a learning rate of 1e-3. The price: NN()'s zero-
    initialised last layer makes the coupling start as y_b = sigmoid(2) x_b ~= 0.881 x_b with
    t = 0, an identity up to a constant scale that the next step's actnorm absorbs, instead of the
    exact identity that exp(log s) would give (the additive coupling does start as the identity).
    """

    def __init__(self, num_channels: int, hidden: int, kind: str = "affine"):
        super().__init__()
        if kind not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, not {kind!r}")
        if num_channels < 2:
            raise ValueError("a coupling layer needs at least 2 channels")
        self.kind = kind
        self.c_a = num_channels // 2
        c_b = num_channels - self.c_a
        self.net = CouplingNN(self.c_a, 2 * c_b if kind == "affine" else c_b, hidden)

    def _shift_and_logit(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.net(x_a)
        if self.kind == "additive":
            return h, None
        return h[:, 0::2], h[:, 1::2] + 2.0  # s = sigmoid(logit)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.c_a], x[:, self.c_a :]
        shift, logit = self._shift_and_logit(x_a)
        if logit is None:
            return torch.cat([x_a, x_b + shift], 1), x.new_zeros(x.shape[0])
        y_b = (x_b + shift) * torch.sigmoid(logit)
        logdet = F.logsigmoid(logit).sum(dim=(1, 2, 3))
        return torch.cat([x_a, y_b], 1), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.c_a], y[:, self.c_a :]
        shift, logit = self._shift_and_logit(y_a)
        x_b = y_b - shift if logit is None else y_b / torch.sigmoid(logit) - shift
        return torch.cat([y_a, x_b], 1)


class Squeeze(nn.Module):
    """Space-to-depth (RealNVP's squeezing, Glow Fig. 2b): each 2x2 block of pixels becomes 4
    channels, ``[B, C, H, W] -> [B, 4C, H/2, W/2]``, channel c*4 + 2i + j holding pixel (i, j) of
    the block (the official ``squeeze2d``'s order). A permutation: log-determinant 0."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"cannot squeeze an image of odd size {h}x{w}")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        x = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w)


class Split(nn.Module):
    """The multi-scale split (Fig. 2b; official ``split2d``) with a learned conditional prior.

    x = (z1, z2), the first C//2 channels and the rest. z1 goes on through the next level; z2 is
    factored out with the prior p(z2 | z1) = N(mu(z1), exp(logs(z1))^2), where (mu, logs) come
    from a zero-initialised 3x3 convolution of z1 (:class:`ZeroConv2d`), as in the official code
    (so it starts as a standard normal). Written as a flow:

        y = (z1, eps),  eps = (z2 - mu(z1)) * exp(-logs(z1)),  log|det dy/dx| = -sum(logs),

    so that log N(z2; mu, exp(logs)^2) = log N(eps; 0, I) - sum(logs): every factored-out latent
    ``eps`` has a standard normal prior, and sampling at temperature T (Sec. 5) draws
    eps ~ N(0, T^2 I), i.e. z2 ~ N(mu, (T exp(logs))^2).
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.c_keep = num_channels // 2
        self.prior = ZeroConv2d(self.c_keep, 2 * (num_channels - self.c_keep))

    def _mean_and_logs(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.prior(z1)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = x[:, : self.c_keep], x[:, self.c_keep :]
        mean, logs = self._mean_and_logs(z1)
        eps = (z2 - mean) * torch.exp(-logs)
        return torch.cat([z1, eps], 1), -logs.sum(dim=(1, 2, 3))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        z1, eps = y[:, : self.c_keep], y[:, self.c_keep :]
        mean, logs = self._mean_and_logs(z1)
        return torch.cat([z1, mean + torch.exp(logs) * eps], 1)


class LearnedPrior(nn.Module):
    """The top latent's prior N(mean, exp(logs)^2) with a learned mean and log-scale per channel,
    both zero-initialised (so it starts as N(0, I)): the official code's ``--learntop``, which all
    its likelihood runs use. Written as a flow onto a standard normal, like :class:`Split`:

        eps = (z - mean) * exp(-logs),   log|det| = -h * w * sum(logs).

    (The official code computes mean and logs with a zero-initialised convolution of a zero
    tensor, whose padding channel lets the border pixels differ; here they are per channel.)
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = (z - self.mean) * torch.exp(-self.logs)
        logdet = -z.shape[2] * z.shape[3] * self.logs.sum()
        return eps, _per_example(logdet, z.shape[0])

    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        return self.mean + torch.exp(self.logs) * eps


PERMUTATIONS = ("lu", "plain")


class FlowStep(nn.Module):
    """One step of flow (Fig. 2a): actnorm -> invertible 1x1 convolution -> coupling layer."""

    def __init__(
        self, num_channels: int, hidden: int, permutation: str = "lu", coupling: str = "affine"
    ):
        super().__init__()
        if permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {PERMUTATIONS}, not {permutation!r}")
        self.actnorm = ActNorm(num_channels)
        conv = InvConv1x1LU if permutation == "lu" else InvConv1x1
        self.invconv = conv(num_channels)
        self.coupling = Coupling(num_channels, hidden, coupling)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in (self.actnorm, self.invconv, self.coupling):
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in (self.coupling, self.invconv, self.actnorm):
            y = layer.inverse(y)
        return y


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) of each example, ``[B]``."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
