"""`course catalog`: the README's table of projects, generated from every project.toml.

Origin: written for dgm-course (MIT licence).

The table lives between ``<!-- catalog:start -->`` and ``<!-- catalog:end -->`` in README.md, so
the rest of the README stays hand-written while the numbers can never drift from project.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from course.projects import (
    CourseError,
    authors_short,
    fmt_number,
    headline,
    readable_projects,
    sort_key,
)
from shared_utils.fileio import atomic_write_bytes

START = "<!-- catalog:start -->"
END = "<!-- catalog:end -->"
HEADER = (
    "| project | paper | topic (week) | headline result | ours | paper's | folder |\n"
    "|---|---|---|---|---:|---:|---|"
)


def _cell(text: Any) -> str:
    """Markdown-table-safe text: no pipes, no newlines."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _paper(meta: dict[str, Any]) -> str:
    papers = meta.get("papers") or []
    if not papers or not isinstance(papers[0], dict):
        return "-"
    paper = papers[0]
    authors = [str(a) for a in paper.get("authors") or []]
    who = authors_short(authors)
    label = _cell(f"{who}, {paper.get('venue', '?')} {paper.get('year', '')}".strip())
    title = _cell(paper.get("title", ""))
    url = str(paper.get("url", ""))
    if url.startswith(("http://", "https://")) and " " not in url and ")" not in url:
        return f"{title} ([{label}]({url}))"
    return f"{title} ({label})"


def catalog_rows(root: Path) -> list[str]:
    """One Markdown row per project with a readable project.toml, by week then slug."""
    projects = readable_projects(root)
    projects.sort(key=lambda p: sort_key(p.meta, p.slug))
    rows = []
    for project in projects:
        meta = project.meta or {}
        row = headline(meta)
        if row is None:
            result, ours, paper = "-", "-", "-"
        else:
            arrow = "lower is better" if row.get("lower_is_better") else "higher is better"
            unit = f", {row.get('unit')}" if row.get("unit") else ""
            result = _cell(f"{row.get('metric', '?')}{unit} ({row.get('estimator', '?')}; {arrow})")
            ours = fmt_number(row["ours"]) if "ours" in row else "not yet"
            if "floor" in row:
                ours += f" (floor {fmt_number(row['floor'])})"
            paper = fmt_number(row.get("paper"))
        topic = _cell(f"{meta.get('topic', '?')} ({meta.get('week', '?')})")
        rows.append(
            f"| {_cell(meta.get('title', project.slug))} | {_paper(meta)} | {topic} | {result} "
            f"| {ours} | {paper} | [projects/{project.slug}](projects/{project.slug}/) |"
        )
    return rows


def render_catalog(root: Path) -> str:
    """The text that belongs between the markers (markers excluded)."""
    rows = catalog_rows(root)
    if not rows:
        return "_No projects yet._"
    return HEADER + "\n" + "\n".join(rows)


def _split(text: str) -> tuple[str, str, str] | None:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        return None
    return text[: start + len(START)], text[start + len(START) : end], text[end:]


def updated_readme(root: Path) -> tuple[str, str]:
    """(current README text, README text with a fresh catalog); CourseError without markers."""
    path = root / "README.md"
    if not path.is_file():
        raise CourseError(
            f"{path} does not exist; the README (with {START} and {END} markers) comes first"
        )
    text = path.read_text(encoding="utf-8")
    parts = _split(text)
    if parts is None:
        raise CourseError(f"{path} has no {START} ... {END} markers; add them where the table goes")
    head, _, tail = parts
    return text, f"{head}\n{render_catalog(root)}\n{tail}"


def check_catalog(root: Path) -> str | None:
    """A one-line problem if README.md has the markers but an outdated table, else None."""
    path = root / "README.md"
    if not path.is_file() or _split(path.read_text(encoding="utf-8")) is None:
        return None
    current, fresh = updated_readme(root)
    return None if current == fresh else "the project catalog is out of date"


def main(root: Path, write: bool, check: bool) -> int:
    """Print the table; ``--write`` updates README.md; ``--check`` fails if it is outdated."""
    if write or check:
        current, fresh = updated_readme(root)
        if check and not write:
            if current != fresh:
                print(
                    "README.md: the project catalog is out of date -> run `course catalog --write`"
                )
                return 1
            print("README.md: catalog up to date")
            return 0
        if current != fresh:
            atomic_write_bytes(
                root / "README.md", fresh.encode("utf-8")
            )  # a kill leaves old or new
            print("README.md: catalog updated")
        else:
            print("README.md: catalog up to date")
        return 0
    print(render_catalog(root))
    return 0
