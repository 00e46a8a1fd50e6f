"""`make ... P=<slug>` narrows the checks to one project; the default runs everything."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
from workflow_policy import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_project_with_p():
    out = _dry_run("unit", "notebooks", "P=vae").stdout
    assert "pytest -q projects/vae/tests" in out and "projects/vae/vae.ipynb" in out
    assert "projects/made" not in out and " tests " not in out
    test = _dry_run("test", "P=vae").stdout
    assert "course check vae" in test and "pre-commit" not in test


def test_every_project_by_default():
    out = _dry_run("unit", "notebooks").stdout
    for slug in ("vae", "made", "pixelcnn"):
        assert f"projects/{slug}/tests" in out and f"projects/{slug}/{slug}.ipynb" in out
    assert "pre-commit run --all-files" in _dry_run("test").stdout


def test_an_unknown_project_is_one_line_naming_the_fix():
    result = _dry_run("unit", "P=nope")
    assert result.returncode != 0
    assert "P=nope: no project folder projects/nope" in result.stderr


def test_data_checksums_are_verified_once_and_again_only_after_a_change(tmp_path):
    """Every target depends on `setup`; it re-hashes the datasets only when a data file is newer
    than the stamp of the last successful check (or missing)."""
    clone = tmp_path / "repo"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".venv", ".git", "data", "runs"))
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / ".installed").touch()  # the venv counts as set up
    files = [clone / "data" / d / "raw" / f for d in ("MNIST", "FashionMNIST") for f in IDX]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()

    def dry(*args):
        return subprocess.run(
            ["make", "-n", "--no-print-directory", *args],
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    assert "shared_utils.data check" in dry("setup")  # never verified yet
    (clone / "data" / ".verified").touch()
    assert "shared_utils.data" not in dry("setup")  # verified: nothing to hash
    later = time.time() + 5
    os.utime(files[3], (later, later))  # a data file changed after the check
    assert "shared_utils.data check" in dry("setup")


IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _stub_setup(clone, venv_bin):
    """A checkout whose `make setup` has nothing to do: a venv (the real tools) and data, both
    newer than what they were made from."""
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        (clone / name).touch()
    files = [clone / "data" / d / "raw" / f for d in ("MNIST", "FashionMNIST") for f in IDX]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    (clone / ".venv").mkdir()
    (clone / ".venv" / "bin").symlink_to(venv_bin)
    later = time.time() + 5
    for stamp in (clone / ".venv" / ".installed", clone / "data" / ".verified"):
        stamp.touch()
        os.utime(stamp, (later, later))


def test_lint_also_checks_files_not_yet_added_to_git(tmp_path):
    """`pre-commit run --all-files` skips untracked files; `make lint` checks them too, so a new
    project folder is linted before `git add` (and ignored files are still left alone)."""
    import sys
    from pathlib import Path

    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "pre-commit").exists() or shutil.which("git") is None:
        pytest.skip("pre-commit or git is not installed")
    clone = tmp_path / "repo"
    clone.mkdir()
    shutil.copy(ROOT / "Makefile", clone / "Makefile")
    (clone / ".pre-commit-config.yaml").write_text(
        "repos:\n  - repo: local\n    hooks:\n"
        "      - {id: no-bad, name: no .bad files, entry: .bad files are refused,"
        " language: fail, files: '\\.bad$'}\n"
    )
    (clone / ".gitignore").write_text("runs/\n.venv/\ndata/\n")
    _stub_setup(clone, venv_bin)

    def run(*args):
        return subprocess.run(
            args, cwd=clone, capture_output=True, text=True, timeout=120, env=os.environ.copy()
        )

    git = ("git", "-c", "user.name=t", "-c", "user.email=t@example.org")
    run("git", "init", "-q")
    run(*git, "add", "-A")
    assert run(*git, "commit", "-q", "-m", "base").returncode == 0
    (clone / "runs").mkdir()
    (clone / "runs" / "ignored.bad").touch()  # ignored by git: not linted
    assert run("make", "--no-print-directory", "lint").returncode == 0

    new = clone / "projects" / "newproj" / "notes.bad"
    new.parent.mkdir(parents=True)
    new.touch()
    result = run("make", "--no-print-directory", "lint")
    assert result.returncode != 0
    assert "projects/newproj/notes.bad" in result.stdout and "ignored.bad" not in result.stdout
    run(*git, "add", "-A")  # once added, --all-files sees it too
    assert run("make", "--no-print-directory", "lint").returncode != 0


def _setup_dry_run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`make -n setup ARGS` in a checkout without a venv: the commands a first set-up runs."""
    clone = tmp_path / "repo"
    (clone / "projects").mkdir(parents=True)
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    return subprocess.run(
        ["make", "-n", "--no-print-directory", "setup", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_default_setup_uses_the_package_index_only(tmp_path):
    out = _setup_dry_run(tmp_path).stdout
    installs = [line for line in out.splitlines() if "pip install" in line]
    assert any("-r requirements-dev.txt" in line for line in installs), out
    assert "download.pytorch.org" not in out and "index-url" not in out


def test_torch_cpu_takes_the_cpu_wheel_index(tmp_path):
    out = _setup_dry_run(tmp_path, "TORCH=cpu").stdout
    (install,) = [line for line in out.splitlines() if "-r requirements-dev.txt" in line]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install
    # an existing venv with the CUDA build is reported, not silently kept
    assert "torch.version.cuda is not None" in out and "rm -rf .venv" in out


def test_an_unknown_torch_flavour_is_one_line_naming_the_choices(tmp_path):
    result = _setup_dry_run(tmp_path, "TORCH=cuda")
    assert result.returncode != 0
    assert "TORCH=cuda: use TORCH=cpu" in result.stderr and "leave TORCH unset" in result.stderr


def test_readme_documents_both_torch_choices_and_their_sizes():
    readme = (ROOT / "README.md").read_text()
    assert "make setup TORCH=cpu" in readme and "https://download.pytorch.org/whl/cpu" in readme
    assert re.search(r"\| `make setup` \|[^|]+\| [\d.]+ GB, measured", readme)
    assert re.search(r"\| `make setup TORCH=cpu` \|[^|]+\| not measured", readme)
