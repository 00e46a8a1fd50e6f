"""`course catalog`: the results of every project, ours next to the paper's, from project.toml.

Origin: written for dgm-course (MIT licence).

One row per ``[[results]]`` entry of every readable project.toml, in course order (week, then
slug). The course site's results page is built from the same rows (:func:`result_rows`); this
command prints them as a Markdown table, e.g. for an issue or a report. Nothing in the repository
stores the table: a pull request that adds a project changes only its own folder, so two such pull
requests never conflict over a shared file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.projects import fmt_number, readable_projects, sort_key

HEADER = (
    "| project | result | metric | ours | paper's | dataset | estimator | budget | command |\n"
    "|---|---|---|---:|---:|---|---|---|---|"
)


@dataclass(frozen=True)
class ResultRow:
    """One ``[[results]]`` entry of a project, with the project it belongs to."""

    slug: str
    title: str
    topic: str
    label: str
    metric: str
    unit: str
    lower_is_better: bool
    dataset: str
    estimator: str
    ours: float | None
    floor: float | None
    paper: float | None
    paper_source: str
    budget: str
    command: str
    checkpoint: str

    @property
    def metric_text(self) -> str:
        """``test NLL, nats (lower is better)``."""
        unit = f", {self.unit}" if self.unit else ""
        better = "lower is better" if self.lower_is_better else "higher is better"
        return f"{self.metric}{unit} ({better})"

    @property
    def ours_text(self) -> str:
        """Our number with its floor when there is one; ``not measured yet`` without a number."""
        if self.ours is None:
            return "not measured yet"
        floor = f" (floor {fmt_number(self.floor)})" if self.floor is not None else ""
        return fmt_number(self.ours) + floor

    @property
    def paper_text(self) -> str:
        return fmt_number(self.paper) if self.paper is not None else "-"


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def project_rows(slug: str, meta: dict[str, Any]) -> list[ResultRow]:
    """The result rows of one project's (schema-valid) metadata."""
    rows = []
    for item in meta.get("results") or []:
        rows.append(
            ResultRow(
                slug=slug,
                title=str(meta.get("title", slug)),
                topic=str(meta.get("topic", "")),
                label=str(item.get("label", "")),
                metric=str(item.get("metric", "")),
                unit=str(item.get("unit", "")),
                lower_is_better=bool(item.get("lower_is_better")),
                dataset=str(item.get("dataset", "")),
                estimator=str(item.get("estimator", "")),
                ours=_number(item.get("ours")),
                floor=_number(item.get("floor")),
                paper=_number(item.get("paper")),
                paper_source=str(item.get("paper_source", "")),
                budget=str(item.get("budget", "-")),
                command=str(item.get("command", "")),
                checkpoint=str(item.get("checkpoint", "")),
            )
        )
    return rows


def result_rows(root: Path) -> list[ResultRow]:
    """Every result row of every readable project, in course order (week, slug, row)."""
    projects = readable_projects(root)
    projects.sort(key=lambda p: sort_key(p.meta, p.slug))
    return [row for p in projects for row in project_rows(p.slug, p.meta or {})]


def _cell(text: Any) -> str:
    """Markdown-table-safe text: no pipes, no newlines."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    """A command as inline code (a pipe inside code still needs its escape in a table)."""
    text = " ".join(text.split())
    if not text:
        return "-"
    fence = "``" if "`" in text else "`"
    return f"{fence}{_cell(text)}{fence}"


def render_markdown(rows: list[ResultRow]) -> str:
    """The rows as one Markdown table (``_No results yet._`` without rows)."""
    if not rows:
        return "_No results yet._"
    lines = [HEADER]
    for row in rows:
        lines.append(
            f"| {_cell(row.title)} ([projects/{row.slug}](projects/{row.slug}/)) "
            f"| {_cell(row.label)} | {_cell(row.metric_text)} | {_cell(row.ours_text)} "
            f"| {_cell(row.paper_text)} | {_cell(row.dataset)} | {_cell(row.estimator)} "
            f"| {_cell(row.budget)} | {_code(row.command)} |"
        )
    return "\n".join(lines)


def main(root: Path) -> int:
    """Print the results table of all projects (Markdown)."""
    print(render_markdown(result_rows(root)))
    return 0
