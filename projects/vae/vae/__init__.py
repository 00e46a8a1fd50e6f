"""Variational autoencoder (Kingma & Welling, ICLR 2014) and importance weighted autoencoder
(Burda, Grosse & Salakhutdinov, ICLR 2016) on dynamically binarized MNIST.

``model.py`` holds the network (the IWAE paper's one-stochastic-layer MNIST architecture),
``objectives.py`` the bounds (ELBO and the IWAE bound L_k), ``train.py``, ``evaluate.py`` and
``bench.py`` the command lines.
"""

from vae.model import VAE, build_model
from vae.objectives import (
    elbo,
    elbo_from_log_weights,
    estimate_log_likelihood,
    iwae_bound,
    log_bernoulli,
    log_normal_diag,
    log_standard_normal,
    log_weights,
    reparameterize,
)

__all__ = [
    "VAE",
    "build_model",
    "elbo",
    "elbo_from_log_weights",
    "iwae_bound",
    "log_bernoulli",
    "log_normal_diag",
    "log_standard_normal",
    "log_weights",
    "reparameterize",
    "estimate_log_likelihood",
]
