"""Glow (Kingma & Dhariwal, NeurIPS 2018) on 28x28 grey images (MNIST, Fashion-MNIST).

``layers.py`` holds the invertible layers (ActNorm, the 1x1 convolution in its plain and LU forms,
the affine and additive couplings, squeeze and split) and ``model.py`` the multi-scale model with
its likelihood in bits/dim; ``train.py``, ``evaluate.py``, ``sample.py`` and ``bench.py`` are the
commands.
"""

from glow.layers import (
    ActNorm,
    Coupling,
    FlowStep,
    InvConv1x1,
    InvConv1x1LU,
    Split,
    Squeeze,
)
from glow.model import Glow, bin_centres, bits_per_dim, dequantize, to_images

__all__ = [
    "ActNorm",
    "Coupling",
    "FlowStep",
    "Glow",
    "InvConv1x1",
    "InvConv1x1LU",
    "Split",
    "Squeeze",
    "bin_centres",
    "bits_per_dim",
    "dequantize",
    "to_images",
]
