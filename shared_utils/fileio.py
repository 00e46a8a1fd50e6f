"""File helpers shared by the data cache, the checkpoints and the `course` tool.

Origin: written for dgm-course (MIT licence).

Why: a cache or a checkpoint must never be left half-written, and must be recognisable when it has
been changed; these are the two primitives for that (content hashes and write-then-rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_beside(path: Path) -> Path:
    """A new empty temporary file in ``path``'s folder (same file system, so renames are atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary file into place with the permissions ``open`` would give
    (mkstemp and safetensors create files 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, final)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never a mix."""
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(payload)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
