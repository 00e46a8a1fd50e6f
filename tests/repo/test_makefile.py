"""`make ... P=<slug>` narrows the checks to one project; the default runs everything."""

from __future__ import annotations

import shutil
import subprocess

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
