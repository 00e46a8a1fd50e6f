"""DDPM (Ho et al. 2020), DDIM (Song et al. 2021) and classifier-free guidance (Ho & Salimans
2022) on MNIST and Fashion-MNIST.

Origin: written for dgm-course (MIT licence).
"""
