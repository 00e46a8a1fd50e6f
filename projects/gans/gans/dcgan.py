"""DCGAN: the GAN objective (Goodfellow et al., NeurIPS 2014) with Radford et al.'s (ICLR 2016)
architecture guidelines (networks.py), initialisation and optimiser settings.

The value function of the two-player minimax game (Goodfellow et al. Eq. 1):

    min_G max_D V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p_z}[log(1 - D(G(z)))]

D maximises V: with D(x) = sigmoid(l(x)) for the logit l, minus V is the binary cross-entropy of
"real" (label 1) on data and "fake" (label 0) on samples, written with logits for stability.

G: minimising log(1 - D(G(z))) saturates early in training, when D rejects the samples with high
confidence and the gradient vanishes; Goodfellow et al. (Sec. 3) train G to maximise
log D(G(z)) instead, the "non-saturating" loss -E_z[log D(G(z))], with the same fixed point.
Both are here; training uses the non-saturating one, as the DCGAN paper does.

DCGAN's training details (Radford et al. Sec. 4): minibatch 128 (we default to 64, like the other
two papers), weights from N(0, 0.02), LeakyReLU slope 0.2, Adam with learning rate 0.0002 and
beta1 = 0.5 (beta2 is not stated: Adam's default 0.999), images scaled to the tanh range [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gans.sngan import SpectralNorm

ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}  # Radford et al. Sec. 4
N_CRITIC = 1  # one D update per G update (Goodfellow et al. Algorithm 1 with k = 1)


def discriminator_loss(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-V(D, G) of Eq. 1 on a batch: BCE(D(x), 1) + BCE(D(G(z)), 0), means over the batch.

    Real and fake images go through D as separate batches (as in the DCGAN code), so D's batch
    norm sees one kind of image per batch. Returns the loss and, for the log, the mean
    probabilities D(x) and D(G(z)).
    """
    logit_real, logit_fake = D(real).flatten(), D(fake).flatten()
    loss = F.binary_cross_entropy_with_logits(
        logit_real, torch.ones_like(logit_real)
    ) + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    stats = {
        "d_real": torch.sigmoid(logit_real.detach()).mean(),
        "d_fake": torch.sigmoid(logit_fake.detach()).mean(),
    }
    return loss, stats


def generator_loss(D: nn.Module, fake: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """The non-saturating loss -E[log D(G(z))] (Goodfellow et al. Sec. 3), or with
    ``saturating=True`` the minimax one E[log(1 - D(G(z)))] (Eq. 1)."""
    logit = D(fake).flatten()
    if saturating:
        return -F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit))
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """Radford et al. Sec. 4: every weight from N(0, 0.02); batch norm scales from N(1, 0.02)
    and its shifts at 0 (the usual reading for the scale, which N(0, 0.02) would nearly zero).
    Use as ``net.apply(init_weights)``; train.py initialises the networks of all three GANs
    this way (a spectrally normalised layer's raw weight too: its scale is divided out by
    sigma(W), and ``apply`` reaches the wrapper after its layer, so its v is re-synced)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, SpectralNorm):
        module.sync_v()
