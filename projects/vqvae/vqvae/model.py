"""VQ-VAE (van den Oord, Vinyals and Kavukcuoglu, NeurIPS 2017) and its prior, in one module.

Origin: written for dgm-course (MIT licence).

Two stages, as in the paper (section 3.2). Stage 1 trains the encoder, the codebook and the
decoder on Eq. 3 (:meth:`Model.loss`; quantizer.py has the equations); the prior p(z) is then
uniform over the K codes and is not trained. Stage 2 freezes them, encodes the training set to
7x7 grids of codes and fits the autoregressive prior (prior.py) by maximum likelihood
(:meth:`Model.prior_loss`). One ``Model`` holds all three networks, so the stage-2 checkpoint
samples by itself: ancestral sampling of a code grid, then decoding (:meth:`Model.sample`).

The bound (section 3.2: "log p(x) >= log p(x | z_q(x)) p(z_q(x))"). With the deterministic
posterior q(z | x) (one-hot at z* = the codes of x, Eq. 1) the ELBO is log p(x | z*) + log p(z*),
so

    -log p(x) <= -log p(x | z_q(x)) - log p(z*)

With the uniform prior of stage 1 the second term is the constant L log K (the paper's KL
term); with the trained prior it is the prior's NLL of the codes. ``evaluate`` reports both, in
bits per dimension over the 784 pixels of an image with 256 grey levels (networks.py gives the
decoder's discretised logistic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from shared_utils.runs import flag

from .networks import Decoder, Encoder, decoder_mean, discretized_logistic_log_prob
from .prior import TransformerPrior
from .quantizer import VectorQuantizer, nearest_code

DATASET = "mnist"
METRIC = "bits_per_dim"
METRIC_LABEL = "test bits/dim (bound, learned prior)"
TEST_CONFIG: dict[str, Any] = {
    "hidden": 16,
    "res_hidden": 8,
    "num_codes": 16,
    "code_dim": 4,
    "prior_dim": 16,
    "prior_layers": 1,
    "prior_heads": 2,
}
IMAGE_SHAPE = (1, 28, 28)
NUM_PIXELS = 784
GRID = 7  # 28 / 4: the code grid is GRID x GRID


@dataclass
class ModelConfig:
    """The model's hyperparameters: the keyword arguments of :class:`Model`, as training flags."""

    hidden: int = flag(64, "channels of the encoder and decoder")
    res_hidden: int = flag(32, "hidden channels of each residual block")
    num_codes: int = flag(512, "K, the codebook size (paper: 512)")
    code_dim: int = flag(32, "D, the dimension of each embedding e_k")
    beta: float = flag(0.25, "commitment cost beta of Eq. 3 (paper: 0.25)")
    ema: bool = flag(False, "update the codebook by the EMA of appendix A.1 instead of the loss")
    ema_decay: float = flag(0.99, "gamma of the EMA codebook update (appendix A.1: 0.99)")
    prior_dim: int = flag(96, "width of the transformer prior")
    prior_layers: int = flag(3, "blocks of the transformer prior")
    prior_heads: int = flag(4, "attention heads of the transformer prior")


class Model(torch.nn.Module):
    """Encoder -> vector quantiser -> decoder, and the prior over the code grid."""

    def __init__(
        self,
        hidden: int = 64,
        res_hidden: int = 32,
        num_codes: int = 512,
        code_dim: int = 32,
        beta: float = 0.25,
        ema: bool = False,
        ema_decay: float = 0.99,
        prior_dim: int = 96,
        prior_layers: int = 3,
        prior_heads: int = 4,
    ) -> None:
        super().__init__()
        self._config = dict(
            hidden=hidden,
            res_hidden=res_hidden,
            num_codes=num_codes,
            code_dim=code_dim,
            beta=beta,
            ema=ema,
            ema_decay=ema_decay,
            prior_dim=prior_dim,
            prior_layers=prior_layers,
            prior_heads=prior_heads,
        )
        self.beta, self.num_codes = beta, num_codes
        self.encoder = Encoder(hidden, code_dim, res_hidden)
        self.quantizer = VectorQuantizer(num_codes, code_dim, ema=ema, gamma=ema_decay)
        self.decoder = Decoder(hidden, code_dim, res_hidden)
        self.prior = TransformerPrior(num_codes, GRID * GRID, prior_dim, prior_layers, prior_heads)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model (stored in the checkpoint's sidecar)."""
        return dict(self._config)

    def vqvae_parameters(self) -> list[torch.nn.Parameter]:
        """What stage 1 trains: encoder, codebook (unless EMA) and decoder."""
        return [p for name, p in self.named_parameters() if not name.startswith("prior.")]

    # -- stage 1: Eq. 3 ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, 1, 28, 28] in [0, 1] -> z_e, z_q, codes, the decoder's (mu, log s), the terms of
        Eq. 3 and the reconstruction NLL per image in nats."""
        z_e = self.encoder(x)
        out = self.quantizer(z_e)
        mu, log_s = self.decoder(out["z_q"])
        log_px = discretized_logistic_log_prob(x, mu, log_s).flatten(1).sum(1)
        return {**out, "z_e": z_e, "mu": mu, "log_s": log_s, "recon_nll": -log_px}

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three terms of Eq. 3 (and their sum ``loss``), each a scalar.

        The reconstruction term is -log p(x | z_q(x)) in nats per pixel; the two codebook terms
        are means over the 49 positions and D dimensions (a constant rescaling of the paper's
        sums, which only sets the relative weight of the terms)."""
        out = self(x)
        recon = out["recon_nll"].mean() / NUM_PIXELS
        terms = {"recon": recon, "codebook": out["codebook_loss"], "commit": out["commitment_loss"]}
        vq = self.beta * terms["commit"]
        if not self.quantizer.ema:  # with EMA (appendix A.1) the codebook has no loss term
            vq = vq + terms["codebook"]
        terms["loss"] = recon + vq
        terms["codes"] = out["codes"]
        terms["z_e"] = out["z_e"]
        return terms

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Stage 1's objective: Eq. 3 (negated log-likelihood), minimised."""
        return self.loss_terms(x)["loss"]

    # -- stage 2: the prior ------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code grid of each image (Eq. 1), flattened in raster order: [B, 49]."""
        z_e = self.encoder(x)
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        return nearest_code(flat, self.quantizer.embedding).reshape(b, h * w)

    def prior_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Stage 2's objective: -log p(z) per code (nats), for code grids ``z`` [B, 49]."""
        return self.prior.nll(z).mean() / z.shape[1]

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Code grids [B, 49] -> images [B, 1, 28, 28] in [0, 1] (the decoder's mean)."""
        z_q = self.quantizer.lookup(z.reshape(-1, GRID, GRID))
        return decoder_mean(*self.decoder(z_q))

    # -- evaluation and sampling -------------------------------------------------------------------

    def evaluate(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per image: the bound on -log p(x) in bits/dim with the learned prior and with the
        uniform prior, its two terms, and the squared error of the reconstruction (mean image)."""
        out = self(x)
        z = out["codes"].flatten(1)
        prior_nll = self.prior.nll(z)
        uniform_nll = torch.full_like(prior_nll, z.shape[1] * math.log(self.num_codes))
        to_bpd = 1.0 / (NUM_PIXELS * math.log(2.0))
        mse = (decoder_mean(out["mu"], out["log_s"]) - x).pow(2).flatten(1).mean(1)
        return {
            "bits_per_dim": (out["recon_nll"] + prior_nll) * to_bpd,
            "bits_per_dim_uniform_prior": (out["recon_nll"] + uniform_nll) * to_bpd,
            "recon_bits_per_dim": out["recon_nll"] * to_bpd,
            "prior_nll_nats": prior_nll,
            "mse": mse,
        }

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images: code grids drawn from the prior (ancestral sampling), decoded."""
        return self.decode(self.prior.sample(n, generator=generator))
