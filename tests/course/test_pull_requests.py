"""Two students' project pull requests merge without conflict, and `course check <slug>` (what a
student runs) agrees with the lint hook's `course check` (every project and the repo-wide rules).

Origin: written for dgm-course (MIT licence).

A project pull request may change only its own folder: nothing shared (a catalog in README.md,
for instance) may need regenerating when a project is added or its numbers change, or the second
of two such pull requests to merge conflicts with the first.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
URL = "https://arxiv.org/abs/1605.08803"


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-c", "user.name=Student", "-c", "user.email=student@example.org", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def main_branch(repo: Path) -> Path:
    """The fixture course with the repository's own README.md and templates, committed on main."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shutil.copy(REPO_ROOT / "README.md", repo / "README.md")
    shutil.copytree(
        REPO_ROOT / "templates",
        repo / "templates",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    assert git(repo, "init", "-q", "-b", "main").returncode == 0
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "course").returncode == 0
    return repo


def test_two_new_projects_merge_without_conflict(main_branch, course):
    repo = main_branch
    for slug, topic in (("gamma", "flows"), ("delta", "gans")):
        assert git(repo, "switch", "-q", "-c", slug, "main").returncode == 0
        rc, out = course(
            "new", slug, "--title", f"Project {slug}", "--paper-url", URL, "--topic", topic,
            "--developer", f"Student {slug}", "--root", repo,
        )  # fmt: skip
        assert rc == 0, out
        # what CONTRIBUTING tells the student to run, and what `make lint`'s hook runs: both
        # pass with nothing done outside the new folder
        rc, mine = course("check", slug, "--root", repo)
        assert rc == 0, mine
        rc, everything = course("check", "--root", repo)
        assert rc == 0, everything
        git(repo, "add", "-A")
        assert git(repo, "commit", "-q", "-m", f"{slug}: v1").returncode == 0
        changed = git(repo, "diff", "--name-only", "main", slug).stdout.split()
        assert changed and all(path.startswith(f"projects/{slug}/") for path in changed), changed

    assert git(repo, "switch", "-q", "main").returncode == 0
    for slug in ("gamma", "delta"):
        merge = git(repo, "merge", "--no-ff", "-q", "-m", f"Merge {slug}", slug)
        assert merge.returncode == 0, merge.stdout + merge.stderr
    assert git(repo, "status", "--porcelain").stdout == ""  # nothing left unmerged
    assert (repo / "projects" / "gamma").is_dir() and (repo / "projects" / "delta").is_dir()
    rc, out = course("check", "--root", repo)
    assert rc == 0, out


def test_check_of_one_project_and_of_all_agree_on_that_project(repo, course):
    """A problem in a project is reported the same way by `course check <slug>` and by the
    lint hook's `course check`; the repo-wide rules are about files no project owns."""
    toml = repo / "projects" / "beta" / "project.toml"
    toml.write_text(toml.read_text().replace("week = 3", "week = 9"))
    rc_one, one = course("check", "beta", "--root", repo)
    rc_all, everything = course("check", "--root", repo)
    assert rc_one == rc_all == 1
    problems = [line for line in one.splitlines() if line.startswith("projects/beta/")]
    assert problems and all(line in everything.splitlines() for line in problems)
