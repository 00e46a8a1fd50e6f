"""Reading a course repository: its root, its projects' project.toml, REVIEW.md and assignments.

Origin: written for dgm-course (MIT licence).

Every `course` subcommand sees the repository through this module, so that `check`, `status`,
`site` and `catalog` agree on what a project, a review finding or a headline number is.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from course.reviews import (  # noqa: F401 - the review format, re-exported
    CRITERIA,
    REVIEW_SECTIONS,
    SEVERITIES,
    VERDICTS,
    Review,
    parse_review,
)

TOPIC_WEEKS: dict[str, tuple[int, ...]] = {
    "autoregressive": (3,),
    "latent-variable": (4, 5),
    "flows": (6,),
    "gans": (7, 8, 9),
    "ebm": (10,),
    "discrete-latent-hybrid": (11,),
    "diffusion-score": (12,),
}
SLUG_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")  # use with fullmatch ("$" lets a "\n" through)
# Device names that Windows cannot check out as folder names, whatever the case.
WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)]
)


def is_slug(name: str) -> bool:
    """A project folder name: 2-32 of a-z, 0-9, _ starting with a letter, not a Windows device."""
    return bool(SLUG_RE.fullmatch(name or "")) and name not in WINDOWS_RESERVED


class CourseError(RuntimeError):
    """A user-facing failure: the message is one line that says what is wrong and what to do."""


def find_root(start: Path | None = None) -> Path:
    """The repository root: the first folder upwards from ``start`` with projects/ and pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "projects").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    raise CourseError(
        f"no course repository above {here} (a folder with projects/ and pyproject.toml); "
        "run from inside the repo or pass --root DIR"
    )


def resolve_root(root: str | Path | None) -> Path:
    """``--root`` if given (it must hold projects/), else :func:`find_root` from the cwd."""
    if root is None:
        return find_root()
    path = Path(root).resolve()
    if not (path / "projects").is_dir():
        raise CourseError(f"--root {root}: no projects/ folder there; point it at the repo root")
    return path


def project_dirs(root: Path) -> list[Path]:
    """Every project folder under ``root/projects`` (hidden and underscore folders skipped)."""
    base = root / "projects"
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_", "__"))
    )


def rel(path: Path, root: Path) -> str:
    """``path`` relative to the repo root when possible, for short messages (a symbolic link is
    named where it is, not where it points)."""
    try:
        return str((path.parent.resolve() / path.name).relative_to(root.resolve()))
    except ValueError:
        return str(path)


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a :class:`CourseError` naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise CourseError(f"{path}: invalid TOML ({err})") from err


@cache
def project_schema() -> dict[str, Any]:
    """The JSON schema of project.toml, shipped as package data (course/project_schema.json)."""
    text = (Path(__file__).parent / "project_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def schema_errors(meta: dict[str, Any]) -> list[Any]:
    """jsonschema's errors of a project.toml's content, in document order."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(project_schema())
    return sorted(validator.iter_errors(meta), key=lambda e: [str(p) for p in e.absolute_path])


@dataclass
class Project:
    """A project folder with its metadata.

    ``meta`` is None when project.toml is missing, unreadable or does not fit the schema (a
    ``topic = ["flows"]`` would break every command that reads it); ``error`` then says why in one
    line and ``raw`` holds what was parsed, for ``course check`` to report in detail.
    """

    slug: str
    path: Path
    meta: dict[str, Any] | None
    error: str | None = None
    raw: dict[str, Any] | None = None

    @property
    def notebook(self) -> Path:
        name = (self.meta or {}).get("notebook") or f"{self.slug}.ipynb"
        return self.path / str(name)

    def review(self) -> Review | None:
        path = self.path / "REVIEW.md"
        if not path.is_file():
            return None
        return parse_review(path.read_text(encoding="utf-8", errors="replace"))


def load_project(path: Path) -> Project:
    """Read one project folder; errors are kept on the object, not raised."""
    toml_path = path / "project.toml"
    if not toml_path.is_file():
        return Project(path.name, path, None, "project.toml is missing")
    try:
        raw = load_toml(toml_path)
    except CourseError as err:
        return Project(path.name, path, None, str(err))
    except UnicodeDecodeError as err:
        return Project(path.name, path, None, f"project.toml is not UTF-8 text ({err.reason})")
    except OSError as err:
        return Project(path.name, path, None, f"project.toml unreadable ({err})")
    errors = schema_errors(raw)
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"project.toml does not fit the schema: {where}: {first.message}{more}"
        return Project(path.name, path, None, message[:300], raw=raw)
    return Project(path.name, path, raw)


def load_projects(root: Path, slugs: list[str] | None = None) -> list[Project]:
    """All projects (or the named ones; an unknown slug is a :class:`CourseError`)."""
    if slugs:
        missing = [s for s in slugs if not (root / "projects" / s).is_dir()]
        if missing:
            raise CourseError(
                f"no project folder projects/{missing[0]} under {root}; "
                "`course status` lists the projects"
            )
        return [load_project(root / "projects" / s) for s in slugs]
    return [load_project(p) for p in project_dirs(root)]


def load_assignments(root: Path) -> list[dict[str, Any]]:
    """The ``[[round]]`` tables of reviews/assignments.toml ([] when the file is absent)."""
    path = root / "reviews" / "assignments.toml"
    if not path.is_file():
        return []
    data = load_toml(path)
    rounds = data.get("round", [])
    return rounds if isinstance(rounds, list) else []


@dataclass(frozen=True)
class Assignment:
    """One ``[[round.assignment]]``: who reviews which project, in which round, by when."""

    round: str
    due: dt.date | None
    reviewer: str
    project: str

    @property
    def version(self) -> str | None:
        """The version this round reviews, from its name ("v1-review" -> "v1"), if it says."""
        m = re.match(r"(v\d+)\b", self.round)
        return m.group(1) if m else None


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def assignments(root: Path) -> list[Assignment]:
    """Every well-formed assignment of reviews/assignments.toml, in file order ([] when the file
    is absent or unreadable: `course check` reports those)."""
    try:
        rounds = load_assignments(root)
    except (CourseError, OSError, UnicodeDecodeError):
        return []
    out = []
    for number, rnd in enumerate(rounds, 1):
        if not isinstance(rnd, dict):
            continue
        name = str(rnd.get("name") or f"round {number}")
        due = _as_date(rnd.get("due"))
        for item in rnd.get("assignment", []) or []:
            if isinstance(item, dict) and item.get("project") and item.get("reviewer"):
                out.append(Assignment(name, due, str(item["reviewer"]), str(item["project"])))
    return out


def assigned_reviewers(root: Path) -> dict[str, list[str]]:
    """slug -> reviewers named in reviews/assignments.toml (all rounds, first-seen order)."""
    out: dict[str, list[str]] = {}
    for item in assignments(root):
        names = out.setdefault(item.project, [])
        if item.reviewer not in names:
            names.append(item.reviewer)
    return out


def issue_repository(root: Path) -> str | None:
    """The ``owner/name`` whose issues the review findings must link: ``repository`` in
    reviews/assignments.toml, else GitHub Actions' ``GITHUB_REPOSITORY``; None when neither is
    set (then any GitHub repository is accepted, as long as one review links only one)."""
    import os

    path = root / "reviews" / "assignments.toml"
    try:
        value = load_toml(path).get("repository") if path.is_file() else None
    except (CourseError, OSError, UnicodeDecodeError):
        value = None
    value = value if isinstance(value, str) and value.strip() else None
    return value or os.environ.get("GITHUB_REPOSITORY") or None


def people_of(meta: dict[str, Any], role: str) -> list[str]:
    """``people.<role>`` as a list of names, whatever shape a broken project.toml gives it."""
    people = meta.get("people")
    names = people.get(role) if isinstance(people, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def sort_key(meta: dict[str, Any] | None, slug: str) -> tuple[int, str]:
    """Course order: by week, then slug (a malformed week sorts last)."""
    week = (meta or {}).get("week")
    return (week if isinstance(week, int) and not isinstance(week, bool) else 99, slug)


NAME_PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "le", "la"}


def surname(author: str) -> str:
    """The family name of "Given Family" with its particles: "Aaron van den Oord" -> "van den Oord"."""
    words = author.split()
    if not words:
        return author
    start = len(words) - 1
    while start > 1 and words[start - 1].lower() in NAME_PARTICLES:
        start -= 1
    return " ".join(words[start:])


def authors_short(authors: list[str]) -> str:
    """ "Surname", "Surname & Surname" or "Surname et al." as papers are usually cited."""
    if not authors:
        return "?"
    if len(authors) == 2:
        return f"{surname(authors[0])} & {surname(authors[1])}"
    return surname(authors[0]) + (" et al." if len(authors) > 2 else "")


def paper_short(meta: dict[str, Any]) -> str:
    """The first paper as "Surname et al. YEAR" (or its ``short`` name and year)."""
    papers = meta.get("papers") or []
    if not papers or not isinstance(papers[0], dict):
        return "-"
    paper = papers[0]
    year = paper.get("year", "")
    if paper.get("short"):
        return f"{paper['short']} {year}".strip()
    authors = [str(a) for a in paper.get("authors") or []]
    if not authors:
        return f"{paper.get('title', '?')} {year}".strip()
    return f"{authors_short(authors)} {year}".strip()


def fmt_number(value: Any) -> str:
    """A number as written in project.toml (floats without trailing noise)."""
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def headline(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The first results row (the project's headline number), or None."""
    results = meta.get("results") or []
    return results[0] if results and isinstance(results[0], dict) else None


def headline_text(meta: dict[str, Any]) -> str:
    """``ours / paper unit`` for the headline row, e.g. ``90.12 / 86.76 nats``."""
    row = headline(meta)
    if row is None:
        return "-"
    ours = fmt_number(row.get("ours")) if "ours" in row else "?"
    return f"{ours} / {fmt_number(row.get('paper'))} {row.get('unit', '')}".strip()


def read_run_times(root: Path) -> dict[str, Any]:
    """build/run_times.json as written by `course run` ({} when absent or unreadable)."""
    path = root / "build" / "run_times.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def readable_projects(root: Path) -> list[Project]:
    """The projects whose project.toml is readable and fits the schema; one line on stderr for
    each of the others, so that one broken project does not stop a command for all of them."""
    import sys

    projects = load_projects(root)
    for project in projects:
        if project.meta is None:
            print(
                f"projects/{project.slug}: skipped: {project.error} (`course check` says more)",
                file=sys.stderr,
            )
    return [p for p in projects if p.meta is not None]
