"""Categorical VAE with the Gumbel-softmax / Concrete relaxation (Jang et al.; Maddison et al.,
ICLR 2017), on dynamically binarized MNIST.

Origin: written for dgm-course (MIT licence).

model.py holds the Gumbel-softmax machinery (Gumbel-Max, Gumbel-softmax, straight-through, the
categorical KL, the temperature schedule) and the model with its objective; train.py, evaluate.py,
sample.py and bench.py are the commands.
"""

from .model import (
    Model,
    ModelConfig,
    categorical_kl_uniform,
    gumbel_max,
    gumbel_softmax,
    sample_gumbel,
    temperature,
)

__all__ = [
    "Model",
    "ModelConfig",
    "categorical_kl_uniform",
    "gumbel_max",
    "gumbel_softmax",
    "sample_gumbel",
    "temperature",
]
