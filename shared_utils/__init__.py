"""Model-independent utilities shared by every dgm-course project.

Origin: written for dgm-course (MIT licence); see shared_utils/ATTRIBUTION.md for outside sources.

Modules: ``data`` (offline datasets), ``runs`` (the run kit: start-or-resume, exact resume,
budgets, flags), ``checkpoints`` (crash-safe safetensors + JSON sidecar), ``training`` (seeding,
devices, progress, CSV logging, EMA, fused Adam, smoke mode), ``metrics`` (likelihood
bookkeeping), ``viz`` (image grids, curves), ``testing`` (resume-exactness helpers),
``benchmarking`` (interleaved timing) and ``distributed`` (data-parallel training under torchrun).
"""

__version__ = "0.1.0"
