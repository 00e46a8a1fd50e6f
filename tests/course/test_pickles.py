"""`course pickles` and the content scan of `course check`: pickles found by their bytes.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from course.pickles import main, sniff


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _positives(tmp: Path) -> dict[str, Path]:
    obj = {"w": [1.0, 2.0], "n": 3}
    files = {}
    torch.save({"w": torch.zeros(2)}, tmp / "model.safetensors")  # torch zip under a safe name
    files["torch zip named .safetensors"] = tmp / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, tmp / "weights.PT")
    files["torch zip named .PT"] = tmp / "weights.PT"
    torch.save(torch.zeros(2), tmp / "legacy.bin", _use_new_zipfile_serialization=False)
    files["legacy torch.save"] = tmp / "legacy.bin"
    for protocol in range(6):
        files[f"pickle protocol {protocol}"] = _write(
            tmp / f"p{protocol}.dat", pickle.dumps(obj, protocol=protocol)
        )
    files["pickle with a global, protocol 0"] = _write(
        tmp / "g0.txt", pickle.dumps(Path("x"), protocol=0)
    )
    files[".pkl.gz"] = _write(tmp / "data.pkl.gz", gzip.compress(pickle.dumps(obj)))
    files["bz2"] = _write(tmp / "data.bz2", bz2.compress(pickle.dumps(obj)))
    files["xz"] = _write(tmp / "data.xz", lzma.compress(pickle.dumps(obj)))
    files["zlib (joblib)"] = _write(tmp / "model.joblib", zlib.compress(pickle.dumps(obj)))
    np.save(tmp / "objects.npy", np.array([obj], dtype=object), allow_pickle=True)
    files[".npy of objects"] = tmp / "objects.npy"
    np.savez(tmp / "objects.npz", a=np.array([obj], dtype=object))
    files[".npz of objects"] = tmp / "objects.npz"
    return files


def _negatives(tmp: Path) -> dict[str, Path]:
    files = {}
    save_file({"w": torch.zeros(3)}, str(tmp / "ok.safetensors"))
    files["safetensors"] = tmp / "ok.safetensors"
    files["json"] = _write(tmp / "ok.json", json.dumps({"a": [1, 2]}).encode())
    files["python"] = _write(tmp / "ok.py", b"class A:\n    def f(self):\n        return 1\n")
    files["text starting with ("] = _write(tmp / "ok.md", b"(see below) and more text.\n")
    files["text N."] = _write(tmp / "n.txt", b"N. B. this is a note\n")
    np.save(tmp / "floats.npy", np.arange(5.0))
    files[".npy of floats"] = tmp / "floats.npy"
    with zipfile.ZipFile(tmp / "plain.zip", "w") as z:
        z.writestr("a.txt", "hello")
    files["zip of text"] = tmp / "plain.zip"
    files["gzip of text"] = _write(tmp / "t.gz", gzip.compress(b"hello world\n"))
    files["png"] = _write(tmp / "x.png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    files["empty"] = _write(tmp / "empty", b"")
    return files


def test_every_pickle_form_is_found_whatever_its_name(tmp_path):
    for name, path in _positives(tmp_path).items():
        assert sniff(path.read_bytes()[: 1 << 16], path), name


def test_ordinary_files_are_not_flagged(tmp_path):
    for name, path in _negatives(tmp_path).items():
        assert sniff(path.read_bytes()[: 1 << 16], path) is None, name


def test_hook_prints_one_line_per_pickle_and_fails(tmp_path, capsys):
    bad = _positives(tmp_path)
    good = _negatives(tmp_path)
    files = [str(p) for p in (*bad.values(), *good.values())]
    assert main(files) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(bad)
    assert all(" -> remove it" in line for line in lines)
    assert main([str(p) for p in good.values()]) == 0


@pytest.mark.parametrize("name", ["model.safetensors", "notes.txt"])
def test_course_check_refuses_pickle_bytes_anywhere_in_a_project(repo, course, name):
    target = repo / "projects" / "beta" / name
    target.write_bytes(pickle.dumps({"a": 1}))
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 1 and f"projects/beta/{name}: a pickle (protocol" in out


def test_course_check_refuses_a_broken_safetensors_body(repo, course):
    ckpt = repo / "projects" / "alpha" / "checkpoints" / "alpha.safetensors"
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[:-4])  # the header is intact, the body is short
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 1 and "alpha.safetensors: not a readable safetensors file" in out
