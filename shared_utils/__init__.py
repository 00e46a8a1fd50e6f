"""Model-independent utilities shared by every dgm-course project.

Origin: written for dgm-course (MIT licence); see shared_utils/ATTRIBUTION.md for outside sources.

Modules: ``data`` (offline datasets), ``checkpoints`` (safetensors + JSON sidecar),
``training`` (seeding, devices, progress, CSV logging, EMA, smoke mode), ``metrics``
(likelihood bookkeeping) and ``viz`` (image grids, curves).
"""

__version__ = "0.1.0"
