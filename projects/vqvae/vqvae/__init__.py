"""VQ-VAE (van den Oord et al., NeurIPS 2017) with a transformer prior over its 7x7 code grid.

Origin: written for dgm-course (MIT licence).

quantizer.py: Eq. 1-3, the straight-through estimator, the EMA codebook (appendix A.1) and
dead-code restarts; networks.py: encoder, decoder and the discretised-logistic likelihood;
prior.py: the autoregressive prior p(z); model.py: all of them as one ``Model`` (the course's
contract); train.py, evaluate.py, sample.py, bench.py: the commands.
"""

from .model import Model, ModelConfig

__all__ = ["Model", "ModelConfig"]
