"""Noise conditional score networks (Song & Ermon, NeurIPS 2019) on 28x28 images and a 2-D toy.

Origin: written for dgm-course (MIT licence).

score.py: the paper's algorithm (noise levels, denoising score matching Eqs. 5-6, Langevin
dynamics Eq. 4, annealed Langevin dynamics Algorithm 1); unet.py: the score network;
model.py: the model of the commands (train.py, evaluate.py, sample.py, bench.py); toy.py: the
2-D mixture of Sec. 3.2 and Fig. 3.
"""

from .model import Model, ModelConfig

__all__ = ["Model", "ModelConfig"]
