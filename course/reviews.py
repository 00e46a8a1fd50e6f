"""REVIEW.md: its strict format, parsed with markdown-it-py exactly as GitHub renders it.

Origin: written for dgm-course (MIT licence). Markdown parsing by markdown-it-py (MIT, used as a
dependency), CommonMark with GFM tables.

The format (templates/REVIEW.md, documented in reviews/README.md):

* ``# Review: <title>``, then the header ``Project: <slug> · Version reviewed: v1 · Reviewer:
  <name> · Date: YYYY-MM-DD`` and ``Status: pending | submitted``;
* ``## Summary`` (free text), ``## Criteria`` (one table: criterion | rating (1-5) | comment),
  ``## Findings``, ``## Verdict``, in this order and no other ``## `` section;
* under Findings, either the paragraph ``No findings.`` or blocks made of a ``### F<n>: <title>``
  heading and one list of the fields ``Issue``, ``Severity``, ``Where``, ``Found``, ``Expected``,
  ``Response (v2)``. Anything else there (a ``### Finding 1:`` or ``#### F1:`` heading, a loose
  paragraph, a list that belongs to no finding) does not parse, and is reported with its line.

The parser records what it read and every line it could not read (``Review.problems``); the rules
that depend on the review's state (a submitted review needs every field filled in) are in
``course.check``. Parsing the Markdown, rather than matching lines, means a finding is read
exactly as it renders: one indented four spaces (a code block) or hidden in an HTML comment is not
a finding.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

REVIEW_SECTIONS = ("Summary", "Criteria", "Findings", "Verdict")
CRITERIA = (
    "Faithful to the paper",
    "Reproducible on the reviewer's machine",
    "Results comparable to the paper's",
    "Clear code and notebook",
)
SCORE_MIN, SCORE_MAX = 1, 5
VERDICTS = ("accept", "minor revision", "major revision")
SEVERITIES = ("major", "minor", "nit")
# The fields of a finding, in the order they are written; keys are the lower-case labels.
FIELDS = ("Issue", "Severity", "Where", "Found", "Expected", "Response (v2)")
FIELD_KEYS = {label.lower(): label for label in FIELDS}
HEADER_KEYS = ("project", "version reviewed", "reviewer", "date", "status")
NO_FINDINGS = "No findings."

FINDING_HEAD = re.compile(r"F(\d+): *(\S.*)")
SLOT = re.compile(r"<[A-Za-z][^<>\n]*>")  # a template slot: <name>, <short title>, ...
RESPONSE_SLOTS = ("<commit/PR>", "<reason>")
ISSUE_URL = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+)/issues/(\d+)")
_REF = (
    r"(?:#\d+|[0-9a-f]{7,40}"
    r"|https://github\.com/[\w.-]+/[\w.-]+/(?:pull/\d+|commit/[0-9a-f]{7,40}))"
)
_LINKED_REF = rf"(?:{_REF}|\[[^\]\n]+\]\({_REF}\)|<{_REF}>)"
ADDRESSED = re.compile(
    rf"addressed in ({_LINKED_REF}(?:(?:, *| and ){_LINKED_REF})*)(?:[.;:]? *\(.+\)|[;:] .+)?\.?",
    re.IGNORECASE,
)
COMMIT = re.compile(r"(?<![#/\w])[0-9a-f]{7,40}(?![\w])")
DECLINED = re.compile(r"declined: *(\S.*)", re.IGNORECASE | re.DOTALL)
MIN_REASON_WORDS = 3


@cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


@dataclass
class Problem:
    """A line that does not parse: 1-based line, what is wrong, how to fix it."""

    line: int
    what: str
    fix: str


@dataclass
class Finding:
    """One ``### F<n>: <title>`` block and its fields (lower-case label -> text)."""

    number: int
    title: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)
    field_lines: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def ident(self) -> str:
        return f"F{self.number}"

    @property
    def response(self) -> str:
        return self.fields.get("response (v2)", "").strip()

    @property
    def state(self) -> str:
        """``addressed``, ``declined``, ``open`` (no response yet) or ``invalid``."""
        return response_state(self.response)

    @property
    def severity(self) -> str:
        return self.fields.get("severity", "").strip().lower()

    @property
    def issue(self) -> str | None:
        """The review-finding issue's URL, when the Issue field is exactly one such link."""
        return issue_url(self.fields.get("issue", ""))


def is_placeholder(text: str) -> bool:
    """Template text: empty, or starting with one of the template's ``<...>`` slots (text that
    merely contains angle brackets, ``a <= b``, is not a placeholder)."""
    text = text.strip()
    return not text or bool(SLOT.match(text))


def issue_url(text: str) -> str | None:
    """The URL of ``https://github.com/o/r/issues/N`` written bare, as ``<URL>`` or as a
    Markdown link ``[#N](URL)``; None for anything else (two links, prose around it)."""
    text = text.strip()
    m = re.fullmatch(r"\[[^\]\n]+\]\((\S+)\)|<(\S+)>|(\S+)", text)
    url = next((g for g in m.groups() if g), "") if m else ""
    return url if ISSUE_URL.fullmatch(url) else None


def response_state(response: str) -> str:
    """Classify a developer's Response: ``addressed in <commit, #PR or URL>``, ``declined:
    <a reason of a few words>``; template text or nothing is ``open``; anything else (a bare
    "addressed", "declined: no") is ``invalid``."""
    text = " ".join(response.split())
    if is_placeholder(text) or any(slot in text for slot in RESPONSE_SLOTS):
        return "open"
    if ADDRESSED.fullmatch(text):
        return "addressed"
    m = DECLINED.fullmatch(text)
    if m and len(m.group(1).split()) >= MIN_REASON_WORDS:
        return "declined"
    return "invalid"


def commits_named(response: str) -> list[str]:
    """The commit hashes an ``addressed in`` response names (bare or in a commit URL), not
    counting the note that may follow them."""
    m = ADDRESSED.fullmatch(" ".join(response.split()))
    refs = m.group(1) if m else ""
    found = COMMIT.findall(refs) + re.findall(r"/commit/([0-9a-f]{7,40})", refs)
    return list(dict.fromkeys(found))


@dataclass
class Review:
    """A parsed REVIEW.md: header fields, sections in order, criteria, findings, verdict."""

    title: str | None = None
    header: dict[str, str] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    summary: str = ""
    criteria: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (score, comment)
    criteria_lines: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    no_findings: bool = False
    verdict: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        value = self.header.get("status", "").split()
        return value[0].lower() if value else None

    @property
    def reviewer(self) -> str:
        return self.header.get("reviewer", "").strip()

    @property
    def version(self) -> str:
        return self.header.get("version reviewed", "").strip()

    @property
    def date(self) -> dt.date | None:
        try:
            return dt.date.fromisoformat(self.header.get("date", "").strip())
        except ValueError:
            return None

    def scores(self) -> dict[str, int | None]:
        """Criterion -> its score (None when not an integer in the rubric's range)."""
        out: dict[str, int | None] = {}
        for name in CRITERIA:
            score = self.criteria.get(name, ("", ""))[0].strip()
            ok = re.fullmatch(r"\d", score) and SCORE_MIN <= int(score) <= SCORE_MAX
            out[name] = int(score) if ok else None
        return out

    @property
    def written(self) -> list[Finding]:
        """The findings a reviewer wrote (the template's ``<short title>`` block left out)."""
        return [f for f in self.findings if not is_placeholder(f.title)]

    def counts(self) -> dict[str, int]:
        """Findings by the developer's response: open (none yet, or not valid), addressed,
        declined."""
        out = {"open": 0, "addressed": 0, "declined": 0}
        for finding in self.written:
            state = finding.state
            out[state if state in out else "open"] += 1
        return out

    def severities(self) -> dict[str, int]:
        """Findings by severity."""
        out = dict.fromkeys(SEVERITIES, 0)
        for finding in self.written:
            if finding.severity in out:
                out[finding.severity] += 1
        return out

    def problem(self, line: int, what: str, fix: str) -> None:
        self.problems.append(Problem(line, what, fix))


def _blocks(tokens: list[Any]) -> list[list[Any]]:
    """Top-level blocks: each an opening token, its content and its closing token (or one
    token for a self-contained block such as an HTML comment or a code block)."""
    blocks, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if token.nesting == 1:
            depth, j = 0, i
            while True:
                depth += tokens[j].nesting
                if depth == 0:
                    break
                j += 1
            blocks.append(tokens[i : j + 1])
            i = j + 1
        else:
            blocks.append([token])
            i += 1
    return blocks


def _line(block: list[Any]) -> int:
    return (block[0].map[0] + 1) if block[0].map else 0


def _inline(block: list[Any]) -> str:
    return next((t.content for t in block if t.type == "inline"), "")


def _is_comment(block: list[Any]) -> bool:
    token = block[0]
    if token.type != "html_block":
        return False
    text = token.content.strip()
    return text.startswith("<!--") and text.endswith("-->")


def _first_line(lines: list[str], block: list[Any]) -> str:
    start = block[0].map[0] if block[0].map else 0
    text = lines[start].strip() if start < len(lines) else ""
    return text if len(text) <= 60 else text[:57] + "..."


def parse_review(text: str) -> Review:
    """Parse a REVIEW.md; what does not fit the format is recorded in ``problems``."""
    review = Review()
    lines = text.splitlines()
    section: str | None = None
    current: Finding | None = None  # the finding whose field list may come next
    verdicts: list[str] = []
    summary: list[str] = []
    tables = 0
    for block in _blocks(_markdown().parse(text)):
        head = block[0]
        line = _line(block)
        if head.type == "heading_open" and head.tag == "h1":
            if review.title is None and section is None:
                review.title = _inline(block).strip()
            else:
                review.problem(line, "a second '# ' title", "keep one '# Review: <title>' line")
            continue
        if head.type == "heading_open" and head.tag == "h2":
            name = _inline(block).strip()
            if name not in REVIEW_SECTIONS or name in review.sections:
                review.problem(
                    line,
                    f"section '## {name}' is {'repeated' if name in review.sections else 'unknown'}",
                    "keep exactly the sections of templates/REVIEW.md: "
                    + ", ".join(REVIEW_SECTIONS),
                )
            review.sections.append(name)
            section, current = name, None
            continue
        if _is_comment(block):
            continue
        if section is None:
            if head.type == "paragraph_open" and review.title is not None:
                _parse_header(review, _inline(block), line)
            else:
                review.problem(
                    line,
                    f"'{_first_line(lines, block)}' before the first section",
                    "start with '# Review: <title>', the header line and the Status line",
                )
        elif section == "Summary":
            summary.append(_inline(block) or head.content)
        elif section == "Criteria":
            if head.type == "table_open":
                tables += 1
                if tables > 1:
                    review.problem(line, "a second table under Criteria", "keep one table")
                else:
                    _parse_criteria(review, block)
            elif head.type != "paragraph_open":
                review.problem(
                    line,
                    f"'{_first_line(lines, block)}' under Criteria does not parse",
                    "rate the criteria in the table of templates/REVIEW.md",
                )
        elif section == "Findings":
            current = _parse_findings_block(review, block, lines, current)
        elif section == "Verdict":
            if head.type == "paragraph_open":
                verdicts.append(_inline(block).strip())
            else:
                review.problem(
                    line,
                    f"'{_first_line(lines, block)}' under Verdict does not parse",
                    "write one line: " + ", ".join(VERDICTS),
                )
    review.summary = "\n".join(s for s in summary if s.strip())
    if len(verdicts) > 1:
        review.problem(0, "more than one paragraph under Verdict", "keep one verdict line")
    if verdicts:
        review.verdict = verdicts[0].strip("* ").lower()
    return review


def _parse_header(review: Review, text: str, line: int) -> None:
    for offset, raw in enumerate(text.splitlines()):
        for part in raw.split("·"):
            key, sep, value = part.partition(":")
            key = key.strip().lower()
            if not sep or key not in HEADER_KEYS or key in review.header:
                review.problem(
                    line + offset,
                    f"header part '{part.strip()}' does not parse",
                    "keep the template's header: 'Project: <slug> · Version reviewed: v1 · "
                    "Reviewer: <name> · Date: YYYY-MM-DD' and 'Status: pending'",
                )
                continue
            review.header[key] = value.strip()


def _parse_criteria(review: Review, block: list[Any]) -> None:
    rows: list[tuple[int, list[str]]] = []
    row: list[str] | None = None
    row_line = 0
    in_body = False
    for token in block:
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tr_open" and in_body:
            row, row_line = [], (token.map[0] + 1 if token.map else 0)
        elif token.type == "inline" and row is not None:
            row.append(token.content.strip())
        elif token.type == "tr_close" and row is not None:
            rows.append((row_line, row))
            row = None
    known = {c.lower(): c for c in CRITERIA}
    for line, cells in rows:
        cells += [""] * (3 - len(cells))
        name = known.get(cells[0].lower())
        if name is None or name in review.criteria:
            review.problem(
                line,
                f"criterion '{cells[0]}' is {'repeated' if name else 'not a rubric criterion'}",
                "keep the four rows of templates/REVIEW.md: " + "; ".join(CRITERIA),
            )
            continue
        review.criteria[name] = (cells[1], cells[2])
        review.criteria_lines[name] = line
        if cells[1] and not re.fullmatch(r"\d", cells[1]):
            review.problem(
                line,
                f"'{name}' rating '{cells[1]}' is not a whole number",
                f"write one digit from {SCORE_MIN} to {SCORE_MAX} (rubric in reviews/README.md)",
            )


def _parse_findings_block(
    review: Review, block: list[Any], lines: list[str], current: Finding | None
) -> Finding | None:
    """One top-level block under Findings; returns the finding still waiting for its fields."""
    head = block[0]
    line = _line(block)
    if head.type == "heading_open":
        text = _inline(block).strip()
        m = FINDING_HEAD.fullmatch(text)
        if head.tag != "h3" or not m:
            review.problem(
                line,
                f"'{_first_line(lines, block)}' is not a finding heading",
                "write each finding as '### F<n>: <short title>' (templates/REVIEW.md)",
            )
            return None
        finding = Finding(int(m.group(1)), m.group(2).strip(), line)
        expected = len(review.findings) + 1
        if finding.number != expected:
            review.problem(
                line, f"F{finding.number} where F{expected} was expected", "number from F1 up"
            )
        review.findings.append(finding)
        if review.no_findings:
            review.problem(line, f"'{NO_FINDINGS}' and findings", f"delete '{NO_FINDINGS}'")
        return finding
    if head.type == "bullet_list_open" and current is not None and not current.order:
        _parse_fields(review, current, block)
        return None
    if head.type == "paragraph_open" and _inline(block).strip() == NO_FINDINGS:
        if review.findings:
            review.problem(line, f"'{NO_FINDINGS}' and findings", f"delete '{NO_FINDINGS}'")
        review.no_findings = True
        return None
    review.problem(
        line,
        f"'{_first_line(lines, block)}' under Findings does not parse",
        "write each finding as '### F<n>: <title>' followed by its list of fields "
        f"({', '.join(FIELDS)}), or only '{NO_FINDINGS}'",
    )
    return None


def _parse_fields(review: Review, finding: Finding, block: list[Any]) -> None:
    depth = 0
    for i, token in enumerate(block):
        if token.type == "list_item_open":
            depth += 1
            if depth != 1:
                continue
            line = token.map[0] + 1 if token.map else 0
            inline = next((t for t in block[i:] if t.type == "inline"), None)
            content = inline.content if inline is not None else ""
            label, sep, value = content.partition(":")
            key = label.strip().lower()
            if not sep or key not in FIELD_KEYS:
                review.problem(
                    line,
                    f"{finding.ident}: '{content.splitlines()[0] if content else ''}' is not a "
                    "field",
                    "write '- <Field>: <text>' with the fields " + ", ".join(FIELDS),
                )
                continue
            if key in finding.fields:
                review.problem(
                    line, f"{finding.ident}: {FIELD_KEYS[key]} given twice", "keep one of them"
                )
                continue
            finding.fields[key] = value.strip()
            finding.field_lines[key] = line
            finding.order.append(key)
        elif token.type == "list_item_close":
            depth -= 1
