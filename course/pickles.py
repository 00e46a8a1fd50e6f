"""Find pickles by their bytes, whatever the file is called.

Origin: written for dgm-course (MIT licence). Formats recognised: the pickle opcode stream
(Python's ``pickletools``, which parses without executing anything), PyTorch's zip archives
(``torch.save``: a ``data.pkl`` member), NumPy ``.npy``/``.npz`` files holding object arrays (they
are pickled), and any of these inside gzip, bz2, xz or zlib compression (``.pkl.gz``, joblib).

Why by content: loading a pickle runs code, so no pickle may enter the repository, and a pickle
renamed to ``model.safetensors`` or ``weights.PT`` is still a pickle. Used by `course check` (every
tracked file) and by the pre-commit hook ``course pickles FILE...``.
"""

from __future__ import annotations

import ast
import bz2
import io
import lzma
import pickletools
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

HEAD = 1 << 16  # bytes of a file (or of its decompressed stream) that are inspected
# opcodes that make unpickling import or call something
CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX"}
SKIP_DIRS = {
    ".git",
    ".venv",
    "data",
    "build",
    "runs",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
}


def _pickle_stream(data: bytes) -> str | None:
    """'a pickle (...)' if ``data`` starts with a pickle opcode stream, else None."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"a pickle (protocol {data[1]})"
    ops: set[str] = set()
    end = None
    try:
        for op, _arg, pos in pickletools.genops(io.BytesIO(data)):
            ops.add(op.name)
            if op.name == "STOP":
                end = pos + 1
                break
    except Exception:  # noqa: BLE001 - any parse error means: not a pickle stream
        return None
    if end is None:
        return None
    if ops & CODE_OPS or not data[end:].strip():
        return "a pickle (protocol 0/1)"
    return None


def _npy(data: bytes) -> str | None:
    """NumPy .npy with an object dtype (pickled elements)."""
    try:
        major = data[6]
        start, size_len = (10, 2) if major == 1 else (12, 4)
        size = int.from_bytes(data[8 : 8 + size_len], "little")
        header = ast.literal_eval(data[start : start + size].decode("latin-1"))
        descr = header["descr"] if isinstance(header, dict) else ""
    except (ValueError, SyntaxError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None
    return "a NumPy array of pickled objects" if "O" in str(descr) else None


def _zip(data: bytes, path: Path | None) -> str | None:
    """A zip archive with a pickle inside (torch.save's format, .npz with object arrays)."""
    try:
        source = open(path, "rb") if path is not None else io.BytesIO(data)  # noqa: SIM115
        with source, zipfile.ZipFile(source) as archive:
            for info in archive.infolist()[:1000]:
                if info.filename.endswith(".pkl"):
                    return f"a zip archive with a pickle ({info.filename}; torch.save's format)"
                with archive.open(info) as member:
                    inner = sniff(member.read(HEAD), depth=1)
                if inner:
                    return f"a zip archive holding {inner} ({info.filename})"
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
        return None
    return None


def _decompressed(data: bytes) -> bytes | None:
    """The first HEAD bytes of ``data`` decompressed, if it is gzip, bz2, xz or zlib."""
    try:
        if data[:2] == b"\x1f\x8b":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, HEAD)
        if data[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(data, HEAD)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(data, HEAD)
        if len(data) > 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0:
            return zlib.decompressobj().decompress(data, HEAD)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return None
    return None


def sniff(data: bytes, path: Path | None = None, depth: int = 0) -> str | None:
    """What code-bearing format ``data`` (the head of a file) is in, or None."""
    if depth > 3 or not data:
        return None
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip(data, path)
    if data[:6] == b"\x93NUMPY":
        return _npy(data)
    inner = _decompressed(data)
    if inner is not None:
        found = sniff(inner, depth=depth + 1)
        return f"a compressed stream holding {found}" if found else None
    return _pickle_stream(data)


def scan_file(path: Path) -> str | None:
    """The code-bearing format of the file at ``path``, or None (unreadable files: None)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except OSError:
        return None
    return sniff(head, path)


def tracked_files(root: Path) -> list[Path]:
    """The files git tracks under ``root`` (every file, outside generated folders, without git)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        files = [root / name for name in out.decode().split("\0") if name]
        return [f for f in files if f.is_file()]
    except (OSError, subprocess.SubprocessError):
        return [
            p
            for p in root.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts)
        ]


def main(files: list[str]) -> int:
    """Pre-commit entry: one line per file with pickle bytes; exit 1 if any."""
    found = 0
    for name in files:
        what = scan_file(Path(name))
        if what:
            found += 1
            print(
                f"{name}: {what} -> remove it; save tensors with shared_utils.checkpoints "
                "(safetensors), data as plain arrays: loading a pickle runs code"
            )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
