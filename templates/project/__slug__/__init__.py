"""The project's implementation package (import name = the project's slug).

Origin: written for dgm-course (MIT licence).

model.py holds the model and its objective (the file to replace with the paper's); train.py,
evaluate.py, sample.py and bench.py are the commands, written against model.py's contract.
"""

from .model import Model, ModelConfig

__all__ = ["Model", "ModelConfig"]
