"""shared_utils.fileio: hashes and write-then-rename."""

from __future__ import annotations

import hashlib

import pytest

from shared_utils.fileio import atomic_write_bytes, sha256_file


def test_sha256_matches_hashlib_across_blocks(tmp_path):
    payload = bytes(range(256)) * 9000  # > 1 MiB: several read blocks
    path = tmp_path / "f.bin"
    path.write_bytes(payload)
    assert sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_atomic_write_replaces_whole_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("shared_utils.fileio.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"never")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]
