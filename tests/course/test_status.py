"""`course status` joins project.toml, assignments, REVIEW.md and run times into one row each.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def test_status_table(repo, course):
    rc, out = course("status", "--root", repo)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["slug", "topic/week", "paper"]
    alpha = next(line for line in lines if line.startswith("alpha "))
    for part in (
        "latent-variable/4",
        "Kingma & Welling 2014",
        "v2",
        "Ada Lovelace",
        "Grace Hopper",
        "submitted (minor revision)",
        "0/1/1",
        "12 s",
        "90.12 / 86.76 nats",
    ):
        assert part in alpha, (part, alpha)
    beta = next(line for line in lines if line.startswith("beta "))
    assert "pending" in beta and "Alan Turing" in beta and "? / 86.76 nats" in beta


def test_status_json(repo, course):
    rc, out = course("status", "--format", "json", "--root", repo)
    assert rc == 0
    rows = {r["slug"]: r for r in json.loads(out)}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["findings"] == {"open": 0, "addressed": 1, "declined": 1}
    assert rows["alpha"]["run"]["seconds"] == 12.5
    assert rows["beta"]["run"] is None
    assert rows["beta"]["reviewers"] == ["Alan Turing"]
    assert rows["alpha"]["headline"] == "90.12 / 86.76 nats"


def test_status_counts_open_findings_and_survives_bad_toml(repo, course):
    review = repo / "projects" / "alpha" / "REVIEW.md"
    review.write_text(review.read_text().replace("addressed in #12", ""))
    (repo / "projects" / "beta" / "project.toml").write_text("not = [valid")
    rc, out = course("status", "--format", "json", "--root", repo)
    rows = {r["slug"]: r for r in json.loads(out)}
    assert rows["alpha"]["findings"]["open"] == 1
    assert rows["beta"]["error"]
    rc, out = course("status", "--root", repo)
    assert rc == 0 and "beta (!)" in out


def test_status_without_projects(tmp_path, course):
    (tmp_path / "projects").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    rc, out = course("status", "--root", tmp_path)
    assert rc == 0 and "no projects" in out


def test_malformed_fields_do_not_crash_the_reports(repo, course):
    toml = repo / "projects" / "beta" / "project.toml"
    text = toml.read_text().replace("week = 3", 'week = "three"')
    text = text.replace('developers = ["Ada Lovelace"]', 'developers = "Ada Lovelace"')
    toml.write_text(text.replace("[[papers]]", "[[papers_typo]]"))
    for args in (("status",), ("status", "--format", "json"), ("site",), ("catalog",)):
        rc, out = course(*args, "--root", repo)
        assert rc == 0, (args, out)
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 1 and "week: 'three' is not of type 'integer'" in out


def test_author_names_keep_their_particles():
    from course.projects import authors_short, surname

    assert surname("Aaron van den Oord") == "van den Oord"
    assert surname("Diederik P. Kingma") == "Kingma"
    assert surname("Van") == "Van"
    assert authors_short(["Diederik P. Kingma", "Max Welling"]) == "Kingma & Welling"
    assert (
        authors_short(["Aaron van den Oord", "Nal Kalchbrenner", "K. K."]) == "van den Oord et al."
    )
    assert authors_short([]) == "?"


# --- review due dates, checks, ratings and the notebook's last run ------------------------------


def _rows(course, repo, *args) -> dict:
    rc, out = course("status", "--format", "json", "--root", repo, *args)
    assert rc == 0, out
    return {r["slug"]: r for r in json.loads(out)}


def test_due_date_and_overdue_flag_against_the_given_day(repo, course):
    rows = _rows(course, repo, "--today", "2026-12-08")
    assert rows["beta"]["due"] == "2026-12-08" and rows["beta"]["overdue"] is False
    rows = _rows(course, repo, "--today", "2026-12-09")
    assert rows["beta"]["overdue"] is True
    assert rows["alpha"]["overdue"] is False  # submitted: never overdue
    rc, out = course("status", "--root", repo, "--today", "2026-12-09")
    beta = next(line for line in out.splitlines() if line.startswith("beta "))
    assert "2026-12-08 OVERDUE" in beta
    assert "1 overdue (beta)" in out


def test_a_review_dated_after_its_due_date_is_late(repo, course):
    review = repo / "projects" / "alpha" / "REVIEW.md"
    review.write_text(review.read_text().replace("Date: 2026-11-20", "Date: 2026-12-10"))
    rows = _rows(course, repo, "--today", "2026-12-20")
    assert rows["alpha"]["late"] is True and rows["alpha"]["overdue"] is False


def test_check_column_passes_and_fails_per_project(repo, course):
    rows = _rows(course, repo)
    assert rows["alpha"]["check"]["errors"] == 0 and rows["beta"]["check"]["errors"] == 0
    review = repo / "projects" / "alpha" / "REVIEW.md"
    review.write_text(review.read_text().replace("addressed in #12", "addressed"))
    rows = _rows(course, repo)
    assert rows["alpha"]["check"]["errors"] == 1 and rows["beta"]["check"]["errors"] == 0
    assert "F1: Response 'addressed' does not parse" in rows["alpha"]["check"]["first"]
    rc, out = course("status", "--root", repo)
    alpha = next(line for line in out.splitlines() if line.startswith("alpha "))
    assert " FAIL (1) " in alpha and "1 of 2 project(s) pass; failing: alpha" in out


def test_ratings_are_summarised(repo, course):
    rows = _rows(course, repo)
    assert rows["alpha"]["scores"] == {
        "Faithful to the paper": 4,
        "Reproducible on the reviewer's machine": 5,
        "Results comparable to the paper's": 3,
        "Clear code and notebook": 4,
    }
    assert rows["beta"]["scores"] is None  # pending: nothing rated yet
    rc, out = course("status", "--root", repo)
    assert "16/20 (4,5,3,4)" in out
    assert "mean rating (1-5) over 1 review(s): faithful 4.0, reproducible 5.0" in out


def _time_cells(notebook: Path, start: str, seconds_per_cell: int) -> None:
    """Give every code cell the execution timing nbclient records (`nbconvert --execute`)."""
    import datetime as dt

    nb = json.loads(notebook.read_text())
    t = dt.datetime.fromisoformat(start)
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        end = t + dt.timedelta(seconds=seconds_per_cell)
        cell["metadata"]["execution"] = {
            "iopub.execute_input": t.isoformat().replace("+00:00", "Z"),
            "iopub.status.busy": t.isoformat().replace("+00:00", "Z"),
            "iopub.status.idle": end.isoformat().replace("+00:00", "Z"),
            "shell.execute_reply": end.isoformat().replace("+00:00", "Z"),
        }
        t = end
    notebook.write_text(json.dumps(nb, indent=1))


def test_last_run_from_the_committed_notebook(repo, course):
    """A fresh clone has no build/run_times.json; the notebook's cells carry their timing."""
    (repo / "build" / "run_times.json").unlink()
    notebook = repo / "projects" / "alpha" / "alpha.ipynb"
    code_cells = sum(c["cell_type"] == "code" for c in json.loads(notebook.read_text())["cells"])
    _time_cells(notebook, "2026-11-21T09:00:00+00:00", 10)
    rows = _rows(course, repo)
    run = rows["alpha"]["last_run"]
    assert run["source"] == "cells" and run["seconds"] == 10 * code_cells
    assert run["when"].startswith("2026-11-21T09:")
    rc, out = course("status", "--root", repo)
    alpha = next(line for line in out.splitlines() if line.startswith("alpha "))
    assert f"2026-11-21 {10 * code_cells} s" in alpha
    beta = next(line for line in out.splitlines() if line.startswith("beta "))
    assert re.search(r"\s-\s+\? / 86\.76 nats$", beta), beta  # no timing, run or commit


def test_a_later_local_run_is_shown_and_else_the_commit_date(repo, course):
    _time_cells(repo / "projects" / "alpha" / "alpha.ipynb", "2026-11-01T09:00:00+00:00", 1)
    assert _rows(course, repo)["alpha"]["last_run"]["source"] == "course run"  # 2026-11-20
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "course")):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    beta = _rows(course, repo)["beta"]["last_run"]
    assert beta["source"] == "commit" and beta["seconds"] is None
    rc, out = course("status", "--root", repo)
    line = next(line for line in out.splitlines() if line.startswith("beta "))
    assert re.search(r"\d{4}-\d\d-\d\d \(commit\)", line), line
