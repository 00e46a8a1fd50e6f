"""JEM and IGEBM: energy-based models trained with Langevin dynamics (import name = the slug).

Origin: written for dgm-course (MIT licence).

model.py holds the energy network (a classifier whose logits define the energy), sgld.py the
Langevin sampler and the replay buffer, objective.py the training objectives, metrics.py ECE and
AUROC; train.py, evaluate.py, sample.py and bench.py are the commands.
"""

from .model import Model, ModelConfig

__all__ = ["Model", "ModelConfig"]
