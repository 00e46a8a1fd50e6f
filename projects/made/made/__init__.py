"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray, Larochelle, 2015).

``made.model`` holds the masked network and the paper's mask construction, ``made.train`` the
training loop (``python -m made.train --help``), ``made.evaluate`` the exact test NLL and
``made.bench`` the CPU throughput benchmark.
"""

from made.model import MADE, MaskedLinear, made_degrees, made_masks

__all__ = ["MADE", "MaskedLinear", "made_degrees", "made_masks"]
