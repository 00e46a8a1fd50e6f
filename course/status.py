"""`course status`: one row per project, the instructor's overview of the whole course; and the
review index, one row per review assignment.

Origin: written for dgm-course (MIT licence).

It joins what is spread over the repo: project.toml (paper, version, people, headline number),
reviews/assignments.toml (assigned reviewers, due dates), REVIEW.md (review status, ratings,
findings), `course check` (pass or fail), and when each notebook last ran: the cells' execution
timestamps that the committed notebook keeps (written by `jupyter nbconvert --execute`), a later
`course run` on this machine (build/run_times.json), or else the date of the commit that last
changed the notebook.

The review index (``--format markdown``, ``--write-index``) is generated, never committed: two
review pull requests that each edited a shared table would conflict, and a table of due dates goes
stale by itself as days pass. The course site shows main's, rebuilt on every push and nightly.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

from course.projects import (
    Assignment,
    Project,
    assignments,
    headline_text,
    load_projects,
    paper_short,
    people_of,
    read_run_times,
    sort_key,
)
from course.reviews import CRITERIA, SCORE_MAX, Review

COLUMNS = (
    ("slug", "slug"),
    ("topic", "topic/week"),
    ("paper", "paper"),
    ("version", "ver"),
    ("check", "check"),
    ("developers", "developers"),
    ("reviewers", "reviewers"),
    ("due", "review due"),
    ("review", "review"),
    ("findings", "findings o/a/d"),
    ("scores", "ratings"),
    ("runtime", "last run"),
    ("headline", "ours / paper"),
)
INDEX_PATH = Path("reviews") / "index.md"
SHORT_CRITERIA = ("faithful", "reproducible", "results", "clear")


# --- when a notebook last ran ------------------------------------------------------------------


def _timestamp(value: Any) -> dt.datetime | None:
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def cells_run(notebook: Path) -> dict[str, Any] | None:
    """When the committed notebook ran and for how long, from its cells' ``execution`` metadata
    (nbclient's timing record: ``iopub.execute_input`` ... ``shell.execute_reply``)."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    starts, ends = [], []
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        timing = meta.get("execution") if isinstance(meta, dict) else None
        if not isinstance(timing, dict):
            continue
        start = _timestamp(timing.get("iopub.execute_input") or timing.get("iopub.status.busy"))
        end = _timestamp(timing.get("shell.execute_reply") or timing.get("iopub.status.idle"))
        starts += [start] if start else []
        ends += [end] if end else []
    if not ends:
        return None
    first, last = min(starts or ends), max(ends)
    return {"when": last.isoformat(), "seconds": (last - first).total_seconds(), "source": "cells"}


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _full_clone(root: Path) -> bool:
    """``root`` is the top of a git work tree with its whole history (dates mean something)."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != root.resolve():
        return False
    return _git(root, "rev-parse", "--is-shallow-repository") == "false"


def commit_run(root: Path, notebook: Path) -> dict[str, Any] | None:
    """The date of the last commit that changed the notebook: its outputs are at least that old."""
    when = _git(root, "log", "-1", "--format=%cI", "--", str(notebook.relative_to(root)))
    return {"when": when, "seconds": None, "source": "commit"} if when else None


def last_run(
    root: Path, project: Project, local: dict[str, Any] | None, git: bool
) -> dict[str, Any] | None:
    """The latest of: the committed cells' timing, this machine's `course run`; failing both,
    the notebook's last commit date."""
    candidates = []
    if project.notebook.is_file():
        committed = cells_run(project.notebook)
        if committed:
            candidates.append(committed)
    if local and _timestamp(local.get("when")):
        candidates.append({**local, "source": "course run"})
    if candidates:
        return max(candidates, key=lambda c: _timestamp(c["when"]))
    if git and project.notebook.is_file():
        return commit_run(root, project.notebook)
    return None


# --- reviews -----------------------------------------------------------------------------------


def _review_of(project: Project) -> Review | None:
    try:
        return project.review()
    except (OSError, UnicodeDecodeError):
        return None


def _signed_by(review: Review | None, item: Assignment) -> bool:
    """The submitted REVIEW.md answers this assignment: same reviewer, and the version the round
    reviews (when its name says, as "v1-review" does)."""
    if review is None or review.status != "submitted" or review.reviewer != item.reviewer:
        return False
    return item.version is None or review.version == item.version


def review_rows(
    root: Path, today: dt.date, projects: list[Project] | None = None
) -> list[dict[str, Any]]:
    """One row per review assignment (and one per project nobody is assigned to)."""
    projects = projects if projects is not None else load_projects(root)
    projects = sorted(projects, key=lambda p: sort_key(p.meta, p.slug))
    by_project: dict[str, list[Assignment]] = {}
    for item in assignments(root):
        by_project.setdefault(item.project, []).append(item)
    rows = []
    for project in projects:
        review = _review_of(project)
        version = (project.meta or {}).get("version")
        items = by_project.get(project.slug) or [None]
        for item in items:
            signed = item is not None and _signed_by(review, item)
            row: dict[str, Any] = {
                "project": project.slug,
                "round": item.round if item else None,
                "reviewer": item.reviewer if item else None,
                "due": item.due.isoformat() if item and item.due else None,
                "overdue": False,
                "late": False,
                "state": "unassigned",
                "findings": None,
                "severities": None,
                "scores": None,
                "verdict": None,
                "review": f"projects/{project.slug}/REVIEW.md",
            }
            if item is not None and signed and review is not None:
                counts = review.counts()
                answered = version == "v2" and review.version == "v1" and counts["open"] == 0
                row["state"] = "answered" if answered else "submitted"
                row["late"] = bool(item.due and review.date and review.date > item.due)
                row["findings"] = counts
                row["severities"] = review.severities()
                row["scores"] = review.scores()
                row["verdict"] = review.verdict
            elif item is not None:
                row["state"] = "pending"
                row["overdue"] = bool(item.due and today > item.due)
            rows.append(row)
    return rows


def _scores_text(scores: dict[str, int | None] | None) -> str:
    if not scores or any(v is None for v in scores.values()):
        return "-"
    values = [scores[c] or 0 for c in CRITERIA]
    return f"{sum(values)}/{SCORE_MAX * len(values)} ({','.join(map(str, values))})"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def review_index(root: Path, today: dt.date) -> str:
    """reviews/index.md: the table of every review, generated from `course status`'s data."""
    rows = review_rows(root, today)
    lines = [
        "# Reviews",
        "",
        f"State on {today.isoformat()}, generated by `course status --write-index` from "
        "`reviews/assignments.toml` and each project's `REVIEW.md` (not kept in git: it is "
        "rebuilt from them, so no two pull requests edit it). Status: `pending` "
        "(assigned, not submitted), `overdue` (pending after the due date), `submitted` "
        "(`late` when dated after the due date), `answered` (v2 has a response to every "
        "finding), `unassigned` (no reviewer in assignments.toml yet). Ratings: the sum of "
        f"the four criteria, 1-{SCORE_MAX} each ({', '.join(SHORT_CRITERIA)}); the rubric is "
        "in the reviewer guide, `reviews/README.md`.",
        "",
        "| project | round | reviewer | due | status | findings open/addressed/declined "
        "| major/minor/nit | ratings | verdict | review |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        state = row["state"]
        if row["overdue"]:
            state = "**overdue**"
        elif row["late"]:
            state += " (late)"
        counts, sev = row["findings"], row["severities"]
        cells = [
            row["project"],
            row["round"] or "-",
            row["reviewer"] or "-",
            row["due"] or "-",
            state,
            f"{counts['open']}/{counts['addressed']}/{counts['declined']}" if counts else "-",
            "/".join(str(sev[s]) for s in ("major", "minor", "nit")) if sev else "-",
            _scores_text(row["scores"]),
            row["verdict"] or "-",
            f"[REVIEW.md](../{row['review']})",
        ]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    if not rows:
        lines.append("| - | - | - | - | no projects yet | - | - | - | - | - |")
    return "\n".join(lines) + "\n"


def write_index(root: Path, today: dt.date, path: Path | None = None) -> Path:
    """Write the review index (default reviews/index.md, which git ignores) atomically."""
    from shared_utils.fileio import atomic_write_bytes

    target = path if path is not None else root / INDEX_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, review_index(root, today).encode("utf-8"))
    return target


# --- the table ---------------------------------------------------------------------------------


def _check_counts(root: Path, project: Project) -> dict[str, Any]:
    from course.check import Report, check_project

    report = Report(root)
    check_project(report, project)
    first = report.errors[0].line() if report.errors else None
    return {"errors": len(report.errors), "warnings": len(report.warnings), "first": first}


def status_rows(root: Path, today: dt.date | None = None) -> list[dict[str, Any]]:
    """The status of every project as plain data (what ``--format json`` prints)."""
    today = today or dt.date.today()
    runs = read_run_times(root)
    git = _full_clone(root)
    projects = load_projects(root)
    reviews = review_rows(root, today, projects)
    rows = []
    for project in projects:
        meta = project.meta or {}
        mine = [r for r in reviews if r["project"] == project.slug]
        reviewers = people_of(meta, "reviewers")
        for name in (r["reviewer"] for r in mine if r["reviewer"]):
            if name not in reviewers:
                reviewers.append(name)
        review = _review_of(project)
        counts = review.counts() if review else {"open": 0, "addressed": 0, "declined": 0}
        if review is None:
            review_text = "missing"
        else:
            review_text = review.status or "?"
            if review.status == "submitted" and review.verdict:
                review_text += f" ({review.verdict})"
        waiting = [r for r in mine if r["state"] == "pending" and r["due"]]
        done = [r for r in mine if r["state"] in ("submitted", "answered") and r["due"]]
        due = min(r["due"] for r in waiting) if waiting else (done[0]["due"] if done else None)
        local = runs.get(project.slug) if isinstance(runs.get(project.slug), dict) else None
        submitted = review is not None and review.status == "submitted"
        rows.append(
            {
                "slug": project.slug,
                "topic": f"{meta.get('topic', '?')}/{meta.get('week', '?')}",
                "paper": paper_short(meta),
                "version": meta.get("version", "?"),
                "check": _check_counts(root, project),
                "developers": people_of(meta, "developers"),
                "reviewers": reviewers,
                "due": due,
                "overdue": any(r["overdue"] for r in mine),
                "late": any(r["late"] for r in mine),
                "review": review_text,
                "findings": counts,
                "scores": review.scores() if submitted and review else None,
                "run": local,
                "last_run": last_run(root, project, local, git),
                "headline": headline_text(meta),
                "error": project.error,
            }
        )
    return rows


def _run_text(run: dict[str, Any] | None) -> str:
    if not run:
        return "-"
    when = _timestamp(run.get("when"))
    day = when.date().isoformat() if when else "?"
    if run.get("source") == "commit":
        return f"{day} (commit)"
    seconds = run.get("seconds")
    text = f"{day} {seconds:.0f} s" if isinstance(seconds, (int, float)) else day
    if run.get("smoke"):
        text += " smoke"
    if not run.get("ok", True):
        text += " FAILED"
    return text


def _cells(row: dict[str, Any]) -> dict[str, str]:
    counts = row["findings"]
    check = row["check"]
    due = row["due"] or "-"
    if row["overdue"]:
        due += " OVERDUE"
    elif row["late"]:
        due += " (late)"
    return {
        "slug": row["slug"] + (" (!)" if row.get("error") else ""),
        "topic": row["topic"],
        "paper": row["paper"],
        "version": str(row["version"]),
        "check": "pass" if not check["errors"] else f"FAIL ({check['errors']})",
        "developers": ", ".join(row["developers"]) or "-",
        "reviewers": ", ".join(row["reviewers"]) or "-",
        "due": due,
        "review": row["review"],
        "findings": f"{counts['open']}/{counts['addressed']}/{counts['declined']}",
        "scores": _scores_text(row["scores"]),
        "runtime": _run_text(row["last_run"]),
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


def summary(rows: list[dict[str, Any]], today: dt.date) -> str:
    """The lines under the table: checks, reviews, and the mean rating per criterion."""
    failing = [r["slug"] for r in rows if r["check"]["errors"]]
    rated = [r["scores"] for r in rows if r["scores"] and None not in r["scores"].values()]
    overdue = [r["slug"] for r in rows if r["overdue"]]
    lines = [
        f"course check: {len(rows) - len(failing)} of {len(rows)} project(s) pass"
        + (f"; failing: {', '.join(failing)} (`course check <slug>` says why)" if failing else ""),
        f"reviews on {today.isoformat()}: {len(rated)} rated, {len(overdue)} overdue"
        + (f" ({', '.join(overdue)})" if overdue else ""),
    ]
    if rated:
        means = [sum(s[c] for s in rated) / len(rated) for c in CRITERIA]
        parts = [f"{name} {m:.1f}" for name, m in zip(SHORT_CRITERIA, means, strict=True)]
        lines.append(
            f"mean rating (1-{SCORE_MAX}) over {len(rated)} review(s): " + ", ".join(parts)
        )
    return "\n".join(lines)


def main(
    root: Path, fmt: str, today: dt.date | None = None, write: str | Path | None = None
) -> int:
    """Print the table, JSON or the review index, or write the index; always 0: status
    reports, `course check` judges."""
    today = today or dt.date.today()
    if write is not None:
        path = write_index(root, today, None if write == "" else Path(write))
        shown = path.relative_to(root) if root in path.resolve().parents else path
        print(f"wrote {shown} ({len(review_rows(root, today))} review row(s), as of {today})")
        return 0
    if fmt == "markdown":
        print(review_index(root, today), end="")
        return 0
    rows = status_rows(root, today)
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        print(format_table(rows))
        print(summary(rows, today))
        if any(r.get("error") for r in rows):
            print(
                "(!) project.toml missing, unreadable or not fitting the schema: run `course check` "
                "for details"
            )
    else:
        print("no projects under projects/ yet (course new <slug> creates one)")
    return 0
