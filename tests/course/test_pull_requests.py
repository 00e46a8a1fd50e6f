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


def _filled_review(slug: str, reviewer: str, issue: int) -> str:
    """templates/REVIEW.md filled in the way the reviewer guide asks."""
    text = (REPO_ROOT / "templates" / "REVIEW.md").read_text()
    text = text.replace("<project title>", f"Project {slug}").replace("<slug>", slug)
    text = text.replace(
        "Reviewer: <name> · Date: YYYY-MM-DD", f"Reviewer: {reviewer} · Date: 2026-12-01"
    )
    text = text.replace("Status: pending", "Status: submitted")
    text = text.replace("## Criteria", f"The {slug} project runs as documented.\n\n## Criteria", 1)
    for criterion in ("Faithful to the paper", "Reproducible on the reviewer's machine",
                      "Results comparable to the paper's", "Clear code and notebook"):  # fmt: skip
        text = text.replace(f"| {criterion} | | |", f"| {criterion} | 4 | see F1 |")
    block = text[text.index("### F1: <short title>") : text.index("## Verdict")]
    text = text.replace(
        block,
        "### F1: The loss is averaged twice\n"
        f"- Issue: https://github.com/dgm-course/dgm-course/issues/{issue}\n"
        "- Severity: minor\n- Where: model.py:10\n- Found: `loss.mean().mean()`.\n"
        "- Expected: one mean, eq. 3.\n"
        "- Response (v2): addressed in <commit/PR> | declined: <reason>\n\n",
    )
    return text.replace("accept | minor revision | major revision", "minor revision")


def test_two_review_pull_requests_merge_without_conflict(main_branch, course):
    """Each review pull request changes its project's REVIEW.md only: the review index is
    generated by `course status` (and ignored by git), so regenerating it touches nothing that
    another review pull request also changes."""
    repo = main_branch
    shutil.copy(REPO_ROOT / ".gitignore", repo / ".gitignore")
    rc, out = course(
        "new", "gamma", "--title", "Project gamma", "--paper-url", URL, "--topic", "flows",
        "--developer", "Student gamma", "--root", repo,
    )  # fmt: skip
    assert rc == 0, out
    assignments = repo / "reviews" / "assignments.toml"
    assignments.write_text(
        assignments.read_text()
        + '\n[[round.assignment]]\nreviewer = "Grace Hopper"\nproject = "gamma"\n'
    )
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "gamma, assigned").returncode == 0

    for slug, reviewer, issue in (("beta", "Alan Turing", 21), ("gamma", "Grace Hopper", 22)):
        assert git(repo, "switch", "-q", "-c", f"review-{slug}", "main").returncode == 0
        (repo / "projects" / slug / "REVIEW.md").write_text(_filled_review(slug, reviewer, issue))
        rc, out = course("check", slug, "--root", repo)
        assert rc == 0, out
        rc, out = course("status", "--write-index", "--root", repo)  # what a reviewer may run
        assert rc == 0, out
        git(repo, "add", "-A")
        assert git(repo, "commit", "-q", "-m", f"review: {slug} v1").returncode == 0
        changed = git(repo, "diff", "--name-only", "main", f"review-{slug}").stdout.split()
        assert changed == [f"projects/{slug}/REVIEW.md"], changed

    assert git(repo, "switch", "-q", "main").returncode == 0
    for slug in ("beta", "gamma"):
        merge = git(repo, "merge", "--no-ff", "-q", "-m", f"Merge review {slug}", f"review-{slug}")
        assert merge.returncode == 0, merge.stdout + merge.stderr
    assert "reviews/index.md" not in git(repo, "ls-files").stdout.split()
    rc, out = course("check", "--root", repo)
    assert rc == 0, out
    rc, out = course("status", "--format", "markdown", "--root", repo)
    for slug in ("beta", "gamma"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {slug} |"))
        assert "| submitted |" in row and "| 16/20 (4,4,4,4) |" in row, row
