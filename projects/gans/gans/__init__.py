"""DCGAN, WGAN-GP and SNGAN on 28x28 grey images (MNIST, Fashion-MNIST).

``networks.py`` holds the shared DCGAN-style generator and discriminator; ``dcgan.py``,
``wgan_gp.py`` and ``sngan.py`` each hold one paper's objective (and, for SNGAN, spectral
normalisation); ``train.py``, ``evaluate.py``, ``sample.py`` and ``bench.py`` are the commands.
"""

from gans.networks import Discriminator, Generator, draw, standing_statistics
from gans.sngan import SpectralNorm

__all__ = ["Discriminator", "Generator", "SpectralNorm", "draw", "standing_statistics"]
