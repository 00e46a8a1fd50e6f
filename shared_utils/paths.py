"""Where the repository, its data cache and its run folders live.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Root of the dataset cache: ``$DGM_DATA_DIR`` if set, else ``<repo>/data``."""
    env = os.environ.get("DGM_DATA_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data"
