"""The project's implementation package (import name = the project's slug).

Origin: written for dgm-course (MIT licence).
"""

from .model import IndependentBernoulli

__all__ = ["IndependentBernoulli"]
