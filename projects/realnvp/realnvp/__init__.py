"""NICE and RealNVP: normalizing flows built from coupling layers, on 28x28 grey images.

``layers.py`` holds the invertible layers (additive and affine couplings, NICE's diagonal
scaling, squeeze), ``model.py`` the two flows behind one interface (:class:`Flow`),
``preprocess.py`` the dequantization, the logit transform and the bits/dim bookkeeping, ``toy.py``
the 2-D toy densities; ``train.py``, ``evaluate.py``, ``sample.py`` and ``bench.py`` are the
commands.
"""

from realnvp.model import Flow, dataset_bits_per_dim
from realnvp.preprocess import bits_per_dim, dequantize, logit_transform

__all__ = ["Flow", "bits_per_dim", "dataset_bits_per_dim", "dequantize", "logit_transform"]
