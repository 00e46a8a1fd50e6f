"""PixelCNN and Gated PixelCNN on binarized MNIST (van den Oord et al., ICML 2016 / NeurIPS 2016)."""

from pixelcnn.autoregressive import nll_per_image, test_nll
from pixelcnn.fast_sampling import fast_sample
from pixelcnn.model import GatedPixelCNN, MaskedConv2d, PixelCNN, build_model, causal_mask

__all__ = [
    "GatedPixelCNN",
    "MaskedConv2d",
    "PixelCNN",
    "build_model",
    "causal_mask",
    "fast_sample",
    "nll_per_image",
    "test_nll",
]
