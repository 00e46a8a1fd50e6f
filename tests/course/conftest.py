"""Shared fixtures of the `course` tests: a copy of the fixture repository and a CLI runner.

Origin: written for dgm-course (MIT licence).

Every test works on its own copy of tests/course/fixtures/repo in tmp_path, so a test may break
the copy in one specific way (the broken-project cases of test_check.py) without touching others.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from course.cli import main

FIXTURE_REPO = Path(__file__).parent / "fixtures" / "repo"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _not_in_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same results locally and in CI: GitHub Actions' repository name would otherwise be
    the course repository that review findings must link (and the site's link target)."""
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh copy of the fixture repository: projects alpha (v2) and beta (v1)."""
    target = tmp_path / "repo"
    shutil.copytree(FIXTURE_REPO, target)
    return target


@pytest.fixture
def course(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Run the CLI in-process: ``course(*args)`` -> (exit status, stdout + stderr)."""

    def run(*args: str | Path) -> tuple[int, str]:
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out = capsys.readouterr()
        return rc, out.out + out.err

    return run
