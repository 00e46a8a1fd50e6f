"""`course status`: one row per project, the instructor's overview of the whole course.

Origin: written for dgm-course (MIT licence).

It joins what is spread over the repo: project.toml (paper, version, people, headline number),
reviews/assignments.toml (assigned reviewers), REVIEW.md (review status and findings) and
build/run_times.json (the last `course run` of each notebook).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from course.projects import (
    assigned_reviewers,
    headline_text,
    load_projects,
    paper_short,
    people_of,
    read_run_times,
)

COLUMNS = (
    ("slug", "slug"),
    ("topic", "topic/week"),
    ("paper", "paper"),
    ("version", "ver"),
    ("developers", "developers"),
    ("reviewers", "reviewers"),
    ("review", "review"),
    ("findings", "findings o/a/d"),
    ("runtime", "last run"),
    ("headline", "ours / paper"),
)


def status_rows(root: Path) -> list[dict[str, Any]]:
    """The status of every project as plain data (what ``--format json`` prints)."""
    assigned = assigned_reviewers(root)
    runs = read_run_times(root)
    rows = []
    for project in load_projects(root):
        meta = project.meta or {}
        reviewers = people_of(meta, "reviewers")
        for name in assigned.get(project.slug, []):
            if name not in reviewers:
                reviewers.append(name)
        try:
            review = project.review()
        except (OSError, UnicodeDecodeError):
            review = None
        counts = review.counts() if review else {"open": 0, "addressed": 0, "declined": 0}
        if review is None:
            review_text = "missing"
        else:
            review_text = review.status or "?"
            if review.status == "submitted" and review.verdict:
                review_text += f" ({review.verdict})"
        run = runs.get(project.slug) if isinstance(runs.get(project.slug), dict) else None
        rows.append(
            {
                "slug": project.slug,
                "topic": f"{meta.get('topic', '?')}/{meta.get('week', '?')}",
                "paper": paper_short(meta),
                "version": meta.get("version", "?"),
                "developers": people_of(meta, "developers"),
                "reviewers": reviewers,
                "review": review_text,
                "findings": counts,
                "run": run,
                "headline": headline_text(meta),
                "error": project.error,
            }
        )
    return rows


def _run_text(run: dict[str, Any] | None) -> str:
    if not run:
        return "-"
    seconds = run.get("seconds")
    text = f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "?"
    if run.get("smoke"):
        text += " smoke"
    if not run.get("ok", True):
        text += " FAILED"
    return text


def _cells(row: dict[str, Any]) -> dict[str, str]:
    counts = row["findings"]
    return {
        "slug": row["slug"] + (" (!)" if row.get("error") else ""),
        "topic": row["topic"],
        "paper": row["paper"],
        "version": str(row["version"]),
        "developers": ", ".join(row["developers"]) or "-",
        "reviewers": ", ".join(row["reviewers"]) or "-",
        "review": row["review"],
        "findings": f"{counts['open']}/{counts['addressed']}/{counts['declined']}",
        "runtime": _run_text(row["run"]),
        "headline": row["headline"],
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned plain-text columns."""
    cells = [_cells(r) for r in rows]
    widths = {key: max([len(title)] + [len(c[key]) for c in cells]) for key, title in COLUMNS}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in COLUMNS).rstrip()]
    lines.append("  ".join("-" * widths[key] for key, _ in COLUMNS))
    for c in cells:
        lines.append("  ".join(c[key].ljust(widths[key]) for key, _ in COLUMNS).rstrip())
    return "\n".join(lines)


def main(root: Path, fmt: str) -> int:
    """Print the table (or JSON); always 0: status reports, `course check` judges."""
    rows = status_rows(root)
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        print(format_table(rows))
        if any(r.get("error") for r in rows):
            print(
                "(!) project.toml missing, unreadable or not fitting the schema: run `course check` "
                "for details"
            )
    else:
        print("no projects under projects/ yet (course new <slug> creates one)")
    return 0
