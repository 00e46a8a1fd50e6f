"""`course check`: every rule of CONVENTIONS.md that a machine can verify, one line per failure.

Origin: written for dgm-course (MIT licence).

Each failure reads ``path: what is wrong -> how to fix``; warnings read
``path: warning: ... -> ...`` and do not change the exit status. Run on a project folder before a
pull request, in pre-commit and in CI, so reviewers spend their time on the paper, not the layout.

Rules beyond the plain file layout:

* Outputs: the notebook must be committed executed (every code cell run, no error output, an image
  in the ``card`` cell) once the project is v2 or ships a checkpoint. A fresh v1 skeleton from
  ``course new`` has no run yet, so it may be stored without outputs.
* TODO/TBD/FIXME markers in project.toml, README.md and the notebook's markdown are warnings in v1 and
  errors in v2. A v1 project without ``[[results]]`` rows gets a warning; v2 needs them.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import struct
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from course.pickles import scan_file, tracked_files
from course.projects import (
    TOPIC_WEEKS,
    CourseError,
    Project,
    assigned_reviewers,
    is_slug,
    issue_repository,
    load_assignments,
    load_projects,
    load_toml,
    people_of,
    rel,
    schema_errors,
)
from course.reviews import (
    CRITERIA,
    FIELD_KEYS,
    FIELDS,
    ISSUE_URL,
    REVIEW_SECTIONS,
    SCORE_MAX,
    SCORE_MIN,
    SEVERITIES,
    VERDICTS,
    commits_named,
    is_placeholder,
    parse_review,
)
from shared_utils.checkpoints import CheckpointError, read_sidecar
from shared_utils.fileio import sha256_file

NOTEBOOK_MAX_BYTES = 3 * 1024 * 1024
CHECKPOINT_MAX_BYTES = 10 * 1024 * 1024
NOTEBOOK_SECTIONS = (
    "The paper in brief",
    "Data",
    "Model",
    "Shipped checkpoint",
    "Live training",
    "Discussion",
    "References",
)
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz"}
LICENCE_NAMES = re.compile(r"^(LICEN[CS]E|COPYING)(\.(txt|md|rst))?$", re.IGNORECASE)
PERMISSIVE = {
    "MIT": (r"\bMIT License\b", r"Permission is hereby granted, free of charge"),
    "BSD": (r"\bBSD\b", r"Redistribution and use in source and binary forms"),
    "Apache-2.0": (r"Apache License",),
    "ISC": (r"\bISC License\b", r"Permission to use, copy, modify, and(/or)? distribute"),
    "PSF": (r"PYTHON SOFTWARE FOUNDATION LICENSE", r"\bPSF\b"),
    "Unlicense": (r"free and unencumbered software released into the public domain",),
    "CC0": (r"\bCC0\b", r"CC0 1\.0 Universal"),
    "zlib": (r"\bzlib License\b", r"This software is provided 'as-is'"),
}
NON_PERMISSIVE = (
    r"non-?commercial",
    r"\bCC[ -]BY[ -](SA[ -])?NC\b",
    r"GNU (Affero |Lesser )?General Public License",
    r"\b[AL]?GPL\b",
    r"Server Side Public License",
    r"\bSSPL\b",
)
SAFE_CHECKPOINT_EXTRAS = {".gitkeep", "README.md"}
TODO_RE = re.compile(r"\b(TODO|TBD|FIXME)\b")


@dataclass
class Issue:
    """One check result: where, what is wrong, how to fix it; warnings do not fail the check."""

    path: str
    what: str
    fix: str
    warning: bool = False

    def line(self) -> str:
        tag = "warning: " if self.warning else ""
        return f"{self.path}: {tag}{self.what} -> {self.fix}"


class Report:
    """Collects issues for one run of `course check`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.issues: list[Issue] = []

    def error(self, path: Path | str, what: str, fix: str) -> None:
        where = rel(path, self.root) if isinstance(path, Path) else path
        self.issues.append(Issue(where, what, fix))

    def warn(self, path: Path | str, what: str, fix: str) -> None:
        where = rel(path, self.root) if isinstance(path, Path) else path
        self.issues.append(Issue(where, what, fix, warning=True))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if not i.warning]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.warning]


@cache
def _json_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for item in error.absolute_path:
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
    return "".join(parts).lstrip(".") or "(top level)"


def check_schema(report: Report, project: Project) -> None:
    """project.toml against course/project_schema.json, plus cross-field rules."""
    path = project.path / "project.toml"
    meta = project.meta or project.raw or {}
    for err in schema_errors(meta):
        where = _json_path(err)
        if err.validator == "dependentRequired" and "'command'" in err.message:
            report.error(
                path,
                f"{where}: `ours` is given without `command`",
                "add command = the exact command that produced the number",
            )
        elif err.validator == "dependentRequired" and "'ours'" in err.message:
            report.error(
                path,
                f"{where}: `floor` is given without `ours`",
                "a floor sits next to a measured number: add ours (and its command)",
            )
        elif err.validator == "dependentRequired":
            report.error(
                path,
                f"{where}: `paper` is given without `paper_source`",
                'add paper_source = "Authors, Venue Year, Table N"',
            )
        else:
            report.error(
                path, f"{where}: {err.message}", "see the project.toml schema in CONVENTIONS.md"
            )
    if project.meta is None:  # the cross-field rules below assume the schema's types
        return
    slug = meta.get("slug")
    if isinstance(slug, str) and slug != project.slug:
        report.error(
            path, f"slug {slug!r} differs from the folder name", f'set slug = "{project.slug}"'
        )
    notebook = meta.get("notebook")
    if isinstance(notebook, str) and notebook != f"{project.slug}.ipynb":
        report.error(
            path,
            f"notebook {notebook!r} is not named after the slug",
            f'rename it and set notebook = "{project.slug}.ipynb"',
        )
    topic, week = meta.get("topic"), meta.get("week")
    if topic in TOPIC_WEEKS and isinstance(week, int) and week not in TOPIC_WEEKS[topic]:
        weeks = "/".join(map(str, TOPIC_WEEKS[topic]))
        report.error(path, f"week {week} does not teach topic {topic!r}", f"set week = {weeks}")
    version = meta.get("version")
    results = meta.get("results") or []
    if not results:
        (report.error if version == "v2" else report.warn)(
            path,
            "no [[results]] rows yet",
            "add one [[results]] table per row of the README's results table",
        )
    for i, row in enumerate(results if isinstance(results, list) else []):
        if not isinstance(row, dict):
            continue
        ckpt = row.get("checkpoint")
        if isinstance(ckpt, str) and not (project.path / ckpt).is_file():
            report.error(
                path,
                f"results[{i}].checkpoint {ckpt} does not exist",
                "commit the checkpoint or fix the path",
            )
        if version == "v2" and "ours" not in row:
            report.error(
                path, f"results[{i}] has no `ours` in a v2 project", "measure it and add ours ="
            )


def check_todo(
    report: Report, path: Path, lines: list[str], version: Any, where: str | None = None
) -> None:
    """TODO markers: a warning for v1 skeletons, an error once the project is v2."""
    hits = [n for n, line in enumerate(lines, 1) if TODO_RE.search(line)]
    if not hits:
        return
    what = f"{len(hits)} TODO/TBD/FIXME marker(s) left ({where or f'first on line {hits[0]}'})"
    fix = "fill them in before the v2 submission"
    (report.error if version == "v2" else report.warn)(path, what, fix)


def check_layout(report: Report, project: Project) -> None:
    """The files every project folder must have."""
    p = project.path
    for name in ("README.md", "REVIEW.md"):
        if not (p / name).is_file():
            fix = (
                "copy templates/REVIEW.md (course new does this)"
                if name == "REVIEW.md"
                else "write the project's README (see templates/project/README.md)"
            )
            report.error(p / name, "missing", fix)
    if not (p / project.slug / "__init__.py").is_file():
        report.error(
            p / project.slug / "__init__.py",
            "missing: the implementation package must be named after the slug",
            f"create {project.slug}/__init__.py",
        )
    tests = p / "tests"
    if not tests.is_dir() or not any(tests.glob("test_*.py")):
        report.error(tests, "no tests/test_*.py", "add unit tests of the paper's math and code")


def _cell_source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def needs_outputs(project: Project) -> bool:
    """Outputs are required once the project is v2 or ships a checkpoint (see module docstring)."""
    version = (project.meta or {}).get("version")
    return version == "v2" or any((project.path / "checkpoints").glob("*.safetensors"))


def check_notebook(report: Report, project: Project) -> None:
    """Notebook rules of CONVENTIONS.md: size, JSON, kernel, parameters/card cells, sections."""
    import nbformat

    path = project.notebook
    if not path.is_file():
        report.error(path, "notebook missing", f"add {project.slug}.ipynb (course new makes one)")
        return
    size = path.stat().st_size
    if size > NOTEBOOK_MAX_BYTES:
        report.error(
            path,
            f"notebook is {size / 2**20:.1f} MB (limit 3 MB)",
            "save figures smaller (dpi ~80) and drop bulky outputs",
        )
        return
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        report.error(
            path, f"not valid JSON ({err})", "restore it from git or re-save it in Jupyter"
        )
        return
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several error types for malformed notebooks
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        report.error(path, f"not a valid notebook ({first})", "re-save it in Jupyter")
        return

    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        report.error(
            path, f"kernelspec is {kernel!r}, not 'python3'", "switch the kernel to python3"
        )

    cells = nb.cells
    code = [c for c in cells if c.cell_type == "code"]
    params = [c for c in cells if "parameters" in _tags(c)]
    if len(params) != 1:
        report.error(
            path,
            f"{len(params)} cells tagged 'parameters' (need exactly 1)",
            "tag the first code cell, which holds every knob, with 'parameters'",
        )
    if code and "parameters" not in _tags(code[0]):
        report.error(
            path,
            "the first code cell is not tagged 'parameters'",
            "move the knobs into the first code cell and tag it 'parameters'",
        )
    if params and "is_smoke" not in _cell_source(params[0]):
        report.error(
            path,
            "the parameters cell does not read the smoke switch",
            "add `from shared_utils.training import is_smoke; SMOKE = is_smoke()`",
        )

    headings = [
        line[3:].strip()
        for c in cells
        if c.cell_type == "markdown"
        for line in _cell_source(c).splitlines()
        if line.startswith("## ")
    ]
    pos = -1
    for name in NOTEBOOK_SECTIONS:
        found = next(
            (i for i in range(pos + 1, len(headings)) if name.lower() in headings[i].lower()), None
        )
        if found is None:
            present = any(name.lower() in h.lower() for h in headings)
            report.error(
                path,
                f"section '## {name}' {'out of order' if present else 'missing'}",
                "use the ## sections in order: " + ", ".join(NOTEBOOK_SECTIONS),
            )
        else:
            pos = found

    cards = [c for c in cells if "card" in _tags(c)]
    if len(cards) != 1 or cards[0].cell_type != "code":
        report.error(
            path,
            f"{len(cards)} cells tagged 'card' (need exactly 1 code cell)",
            "tag the cell that draws the sample grid with 'card'",
        )
    if not any(_cell_source(c).lstrip().startswith("# NBVAL_CHECK_OUTPUT") for c in code):
        report.error(
            path,
            "no cell starts with '# NBVAL_CHECK_OUTPUT'",
            "mark the cell that prints the shipped checkpoint's metric on the fixed subset",
        )

    check_todo(
        report,
        path,
        [line for c in cells if c.cell_type == "markdown" for line in _cell_source(c).splitlines()],
        (project.meta or {}).get("version"),
        "in markdown cells",
    )

    if not needs_outputs(project):
        return
    unrun = [i for i, c in enumerate(cells) if c.cell_type == "code" and _cell_source(c).strip()]
    unrun = [i for i in unrun if cells[i].get("execution_count") is None]
    if unrun:
        report.error(
            path,
            f"{len(unrun)} code cell(s) not executed (first: cell {unrun[0]}); v2 or a shipped "
            "checkpoint needs committed outputs",
            f"cd projects/{project.slug} && jupyter nbconvert --to notebook --execute --inplace "
            f"{path.name}",
        )
    failed = [
        i
        for i, c in enumerate(code)
        if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    if failed:
        report.error(path, "a committed output is an error traceback", "fix the cell and re-run")
    if len(cards) == 1 and not any(
        "image/png" in o.get("data", {}) for o in cards[0].get("outputs", [])
    ):
        report.error(
            path, "the 'card' cell has no image/png output", "run it so it shows the sample grid"
        )


def check_review(report: Report, project: Project) -> None:
    """REVIEW.md in the strict format of course.reviews; a submitted review filled in completely
    and signed by an assigned reviewer; in v2, a valid Response to every finding."""
    path = project.path / "REVIEW.md"
    if not path.is_file():
        return
    review = parse_review(path.read_text(encoding="utf-8", errors="replace"))
    where = rel(path, report.root)

    def error(line: int, what: str, fix: str) -> None:
        report.error(f"{where}:{line}" if line else where, what, fix)

    for problem in review.problems:
        error(problem.line, problem.what, problem.fix)
    version = (project.meta or {}).get("version")
    if not review.title or not review.title.startswith("Review:"):
        error(1, "first heading is not '# Review: <title>'", "start from templates/REVIEW.md")
    if review.status not in ("pending", "submitted"):
        error(
            0,
            f"Status is {review.status!r}",
            "write 'Status: pending' or 'Status: submitted' under the title",
        )
    missing = [s for s in REVIEW_SECTIONS if s not in review.sections]
    known = list(dict.fromkeys(s for s in review.sections if s in REVIEW_SECTIONS))
    first = (
        missing[0]
        if missing
        else next((s for s, k in zip(REVIEW_SECTIONS, known, strict=True) if s != k), None)
    )
    if first:
        error(
            0,
            f"section '## {first}' missing or out of order",
            "keep the sections of templates/REVIEW.md: " + ", ".join(REVIEW_SECTIONS),
        )
    if version == "v2" and review.status != "submitted":
        error(
            0,
            "a v2 project needs a submitted review",
            "the reviewer sets 'Status: submitted' with the v1 review",
        )
    if review.status == "submitted":
        _check_submitted(report, project, review, error)
    _check_responses(report, review, version, error)


def _check_submitted(report: Report, project: Project, review: Any, error: Any) -> None:
    """Everything a submitted review must have: header, summary, scores, findings, verdict."""
    slug = project.slug
    if review.header.get("project", "").strip() != slug:
        error(2, f"Project: {review.header.get('project', '')!r} is not {slug!r}", "fix the header")
    if review.version not in ("v1", "v2"):
        error(2, f"Version reviewed {review.version!r}", "write v1 or v2")
    if review.date is None:
        error(2, f"Date {review.header.get('date', '')!r} is not YYYY-MM-DD", "date the review")
    reviewer = review.reviewer
    assigned = assigned_reviewers(report.root).get(slug, [])
    if not reviewer or is_placeholder(reviewer):
        error(2, "no Reviewer: name in the header", "the reviewer signs the review")
    elif reviewer not in assigned:
        error(
            2,
            f"Reviewer {reviewer!r} is not assigned to {slug} in reviews/assignments.toml "
            f"(assigned: {', '.join(assigned) or 'nobody'})",
            "sign with your name exactly as in reviews/assignments.toml, or ask the instructor "
            "to assign you",
        )
    if not review.summary.strip() or is_placeholder(review.summary):
        error(0, "the Summary is empty", "write three to six sentences (templates/REVIEW.md)")
    for criterion in CRITERIA:
        score, comment = review.criteria.get(criterion, ("", ""))
        line = review.criteria_lines.get(criterion, 0)
        if review.scores()[criterion] is None:
            error(
                line,
                f"criterion '{criterion}' has no rating {SCORE_MIN}-{SCORE_MAX}",
                "fill the Criteria table (rubric in reviews/README.md)",
            )
        elif not comment.strip() or is_placeholder(comment):
            error(
                line,
                f"criterion '{criterion}' has no comment",
                "say why, naming the findings behind the rating",
            )
    if not review.findings and not review.no_findings:
        error(0, "no findings and no 'No findings.'", "list the findings or write 'No findings.'")
    repository = issue_repository(report.root)
    seen: dict[str, str] = {}
    for finding in review.findings:
        _check_finding(finding, repository, seen, error)
    repos = {"/".join(ISSUE_URL.fullmatch(u).group(1, 2)).lower() for u in seen}
    if len(repos) > 1:
        error(
            0,
            f"the findings link issues of {len(repos)} repositories ({', '.join(sorted(repos))})",
            "file every finding in the course repository's issues",
        )
    if review.verdict not in VERDICTS:
        error(0, f"verdict {review.verdict!r}", "write one of: " + ", ".join(VERDICTS))


def _check_finding(finding: Any, repository: str | None, seen: dict[str, str], error: Any) -> None:
    """One finding of a submitted review: every field, in order, filled in; its own issue."""
    ident = finding.ident
    if is_placeholder(finding.title):
        error(finding.line, f"{ident} is still the template's placeholder", "fill it in or delete")
        return
    missing = [label for label in FIELDS if label.lower() not in finding.fields]
    if missing:
        error(
            finding.line,
            f"{ident}: no {', '.join(missing)} field",
            "give every finding the fields " + ", ".join(FIELDS),
        )
    present = [key for key in (label.lower() for label in FIELDS) if key in finding.fields]
    if finding.order != present:
        error(finding.line, f"{ident}: fields out of order", "order them " + ", ".join(FIELDS))
    lines = finding.field_lines
    if "issue" in finding.fields:
        url = finding.issue
        if url is None:
            error(
                lines["issue"],
                f"{ident}: Issue {finding.fields['issue']!r} is not a link to one GitHub issue",
                "file the finding with the Review finding issue form and give its URL, "
                "https://github.com/<owner>/<repo>/issues/<n>",
            )
        else:
            owner_repo = "/".join(ISSUE_URL.fullmatch(url).group(1, 2))
            if repository and owner_repo.lower() != repository.lower():
                error(
                    lines["issue"],
                    f"{ident}: Issue links {owner_repo}, not the course repository {repository}",
                    "file the finding in the course repository's issues",
                )
            if url in seen:
                error(
                    lines["issue"],
                    f"{ident}: Issue {url} is also {seen[url]}'s",
                    "file one issue per finding",
                )
            seen.setdefault(url, ident)
    if "severity" in finding.fields and finding.severity not in SEVERITIES:
        error(
            lines["severity"],
            f"{ident}: Severity {finding.fields['severity']!r}",
            "use major, minor or nit",
        )
    for key in ("where", "found", "expected"):
        if key in finding.fields and is_placeholder(finding.fields[key]):
            error(lines[key], f"{ident}: {FIELD_KEYS[key]} is not filled in", "describe it")


def _check_responses(report: Report, review: Any, version: Any, error: Any) -> None:
    """Responses: a valid one wherever one is written; one on every finding in v2."""
    for finding in review.findings:
        line = finding.field_lines.get("response (v2)", finding.line)
        state = finding.state
        if state == "invalid":
            error(
                line,
                f"{finding.ident}: Response {finding.response!r} does not parse",
                "write 'addressed in <commit, #PR or PR URL>' or 'declined: <reason in a few "
                "words>'",
            )
        elif state == "open" and version == "v2" and not is_placeholder(finding.title):
            error(
                line,
                f"{finding.ident} ({finding.title}) has no Response",
                "write 'Response (v2): addressed in <commit/PR>' or 'declined: <reason>'",
            )
        elif state == "addressed":
            for sha in commits_named(finding.response):
                if git_lacks_commit(report.root, sha):
                    error(
                        line,
                        f"{finding.ident}: commit {sha} is not in this repository's history",
                        "name a commit of the branch (git log --oneline), or the pull request",
                    )


def git_lacks_commit(root: Path, sha: str) -> bool:
    """True only when ``root`` is a full (not shallow) git clone that has no commit ``sha``; a
    shallow clone (CI's checkout) or a folder outside git cannot tell, and says False."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return False
        if git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
            return False
        return git("cat-file", "-e", f"{sha}^{{commit}}").returncode != 0
    except (OSError, subprocess.SubprocessError):
        return False


def _safetensors_problem(path: Path) -> str | None:
    """Why the safetensors library refuses to read ``path`` (header and every tensor), or None.

    A valid header followed by a body that does not match it is refused too: reading every
    tensor checks the offsets and sizes the header promises.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) != 8:
            return "too short to be a safetensors file"
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > 100_000_000:
            return "does not start with a safetensors header"
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                f.get_tensor(key)
        return None
    except Exception as err:  # noqa: BLE001 - every failure of the reader is the answer
        return f"not a readable safetensors file ({str(err).splitlines()[0][:120]})"


def check_checkpoints(report: Report, project: Project) -> None:
    """checkpoints/: only safetensors + JSON sidecar pairs, each <= 10 MB, sha256 as recorded."""
    folder = project.path / "checkpoints"
    if not folder.is_dir():
        return
    fix_pickle = (
        "re-save with shared_utils.checkpoints.save_checkpoint (safetensors); "
        "a pickle runs code when it is loaded"
    )
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name, suffix = path.name, path.suffix.lower()
        if name in SAFE_CHECKPOINT_EXTRAS or scan_file(path):  # pickles: see check_pickles
            continue
        if suffix in PICKLE_SUFFIXES:
            report.error(path, f"pickle-based checkpoint ({suffix}) is not allowed", fix_pickle)
            continue
        if path.stat().st_size > CHECKPOINT_MAX_BYTES:
            report.error(
                path,
                f"{path.stat().st_size / 2**20:.1f} MB (limit 10 MB)",
                "ship a smaller model (fewer channels, half precision) or leave it out",
            )
            continue
        if name.endswith(".train.safetensors"):
            report.error(path, "training state shipped", "save the shipped checkpoint without it")
        elif suffix == ".safetensors":
            problem = _safetensors_problem(path)
            if problem:
                report.error(path, problem, fix_pickle)
                continue
            _check_sidecar(report, path)
        elif suffix == ".json":
            if not path.with_suffix(".safetensors").is_file():
                report.error(path, "sidecar without its .safetensors weights", "remove it")
        else:
            report.error(
                path,
                "unexpected file in checkpoints/",
                "keep only <name>.safetensors + <name>.json pairs",
            )


def _check_sidecar(report: Report, weights: Path) -> None:
    side = weights.with_suffix(".json")
    fix = "re-save with shared_utils.checkpoints.save_checkpoint"
    if not side.is_file():
        report.error(weights, f"sidecar {side.name} missing", fix)
        return
    try:
        sidecar = read_sidecar(weights)
    except CheckpointError as err:
        message = str(err).split(str(side), 1)[-1].lstrip(": ")
        report.error(side, message.split("; ")[0], fix)
        return
    if sidecar["sha256"] != sha256_file(weights):
        report.error(
            weights,
            f"sha256 does not match {side.name}",
            "restore the weights (git checkout) or re-save the checkpoint",
        )


def _licence_kind(text: str) -> tuple[str | None, str | None]:
    """(permissive licence name or None, non-permissive marker or None)."""
    bad = next((m for m in NON_PERMISSIVE if re.search(m, text, re.IGNORECASE)), None)
    for name, patterns in PERMISSIVE.items():
        if any(re.search(p, text, re.IGNORECASE) for p in patterns):
            return name, bad
    return None, bad


def _has_source_header(path: Path) -> bool:
    """A '# Source:' comment in the first 40 lines or 'Source:' in the module docstring."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    for line in text.splitlines()[:40]:
        if re.match(r"^\s*#\s*Source:\s*\S", line):
            return True
    try:
        doc = ast.get_docstring(ast.parse(text)) or ""
    except SyntaxError:
        return False
    return any(re.match(r"^\s*Source:\s*\S", line) for line in doc.splitlines())


def check_vendor(report: Report, project: Project) -> None:
    """vendor/ folders: a permissive LICENSE that covers every file, a Source header per .py."""
    for vendor in sorted(project.path.rglob("vendor")):
        if not vendor.is_dir() or "runs" in vendor.relative_to(project.path).parts:
            continue
        for path in sorted(p for p in vendor.rglob("*") if p.is_file()):
            if LICENCE_NAMES.match(path.name) or "__pycache__" in path.parts:
                continue
            licence = _find_licence(path.parent, vendor)
            if licence is None:
                report.error(
                    path,
                    "vendored file without a LICENSE/LICENCE file",
                    "add the original licence next to it (vendor/<name>/LICENSE)",
                )
            empty = path.stat().st_size == 0 or not path.read_bytes().strip()
            if path.suffix == ".py" and not empty and not _has_source_header(path):
                report.error(
                    path,
                    "vendored file does not name its source",
                    "add a '# Source: <url> (<licence>)' line at the top",
                )
        for licence in sorted(p for p in vendor.rglob("*") if LICENCE_NAMES.match(p.name)):
            text = licence.read_text(encoding="utf-8", errors="replace")
            kind, bad = _licence_kind(text)
            if bad or kind is None:
                what = (
                    f"licence is not permissive ({bad!r} found)"
                    if bad
                    else "licence not recognised"
                )
                report.error(
                    licence,
                    what,
                    "vendor only MIT/BSD/Apache-2.0/ISC/PSF/Unlicense/CC0/zlib code, or rewrite it",
                )


def _find_licence(folder: Path, vendor: Path) -> Path | None:
    here = folder
    while True:
        for candidate in here.iterdir():
            if candidate.is_file() and LICENCE_NAMES.match(candidate.name):
                return candidate
        if here == vendor or vendor not in here.parents:
            return None
        here = here.parent


def _project_files(project: Project) -> list[Path]:
    skip = {"runs", "__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
    return sorted(
        p
        for p in project.path.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(project.path).parts)
    )


def check_pickles(report: Report, files: list[Path]) -> None:
    """No file holds pickle bytes (or a torch zip archive), whatever its name."""
    for path in files:
        what = scan_file(path)
        if what:
            report.error(
                path,
                f"{what}: loading it runs code",
                "remove it; save weights with shared_utils.checkpoints (safetensors) and data as "
                "plain arrays",
            )


def check_project(report: Report, project: Project) -> None:
    """All per-project rules."""
    toml_path = project.path / "project.toml"
    if not is_slug(project.slug):
        report.error(
            project.path,
            "folder name is not a valid slug (2-32 of a-z, 0-9, _ from a letter; no Windows device "
            "name)",
            "rename it with course new",
        )
    if project.meta is None and not toml_path.is_file():
        report.error(
            toml_path, "missing", "add it; templates/project/project.toml shows the fields"
        )
    elif project.meta is None and project.raw is not None:  # parsed, but not the schema
        check_schema(report, project)
    elif project.meta is None:
        err = (project.error or "unreadable").split(": ", 1)[-1]
        report.error(toml_path, err, "fix the TOML syntax (see CONVENTIONS.md for the schema)")
    else:
        check_schema(report, project)
        check_todo(
            report,
            toml_path,
            toml_path.read_text(encoding="utf-8").splitlines(),
            project.meta.get("version"),
        )
    readme = project.path / "README.md"
    if readme.is_file():
        check_todo(
            report,
            readme,
            readme.read_text(encoding="utf-8", errors="replace").splitlines(),
            (project.meta or {}).get("version"),
        )
    check_symlinks(report, project)
    check_layout(report, project)
    check_notebook(report, project)
    check_review(report, project)
    check_pickles(report, _project_files(project))
    check_checkpoints(report, project)
    check_vendor(report, project)


def check_symlinks(report: Report, project: Project) -> None:
    """No symbolic links in a project: one can point outside the repository (to /etc/passwd) or
    pass another project's file off as this one's, and Windows clones them as plain text."""
    for folder, dirs, files in os.walk(project.path):  # does not descend into linked folders
        dirs[:] = [d for d in dirs if d not in (".ipynb_checkpoints", "__pycache__", "runs")]
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if path.is_symlink():
                report.error(
                    path,
                    f"a symbolic link (to {os.readlink(path)})",
                    "replace it with the file itself (or drop it)",
                )


def check_shared_utils(report: Report) -> None:
    """Every shared_utils/*.py states its origin in the module docstring."""
    folder = report.root / "shared_utils"
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError) as err:
            report.error(path, f"cannot parse ({err})", "fix the module")
            continue
        if "Origin:" not in doc:
            report.error(
                path,
                "module docstring has no 'Origin:' line",
                "start the docstring with a summary and an 'Origin: ...' attribution line",
            )


def check_assignments(report: Report) -> None:
    """reviews/assignments.toml names existing projects, with dated rounds."""
    path = report.root / "reviews" / "assignments.toml"
    if not path.is_file():
        return
    try:
        rounds = load_assignments(report.root)
    except CourseError as err:
        report.error(path, str(err).split(": ", 1)[-1], "fix the TOML syntax")
        return
    repository = load_toml(path).get("repository")
    if repository is not None and not (
        isinstance(repository, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", repository)
    ):
        report.error(
            path,
            f"repository {repository!r} is not 'owner/name'",
            'write the GitHub repository whose issues hold the findings, e.g. "course/dgm"',
        )
    projects = {p.name: p for p in (report.root / "projects").iterdir() if p.is_dir()}
    for r, rnd in enumerate(rounds):
        if not isinstance(rnd, dict):
            report.error(path, f"round {r + 1} is not a table", "use [[round]] tables")
            continue
        label = rnd.get("name") or f"round {r + 1}"
        if not isinstance(rnd.get("name"), str):
            report.error(path, f"round {r + 1} has no name", 'add name = "v1-review"')
        due = rnd.get("due")
        if isinstance(due, str):
            try:
                dt.date.fromisoformat(due)
            except ValueError:
                due = None
        if not isinstance(due, (str, dt.date)):
            report.error(path, f"{label}: due is not a YYYY-MM-DD date", 'add due = "YYYY-MM-DD"')
        for item in rnd.get("assignment", []) or []:
            slug = item.get("project") if isinstance(item, dict) else None
            reviewer = item.get("reviewer") if isinstance(item, dict) else None
            if not reviewer or not slug:
                report.error(
                    path,
                    f"{label}: an assignment lacks reviewer or project",
                    'write reviewer = "..." and project = "<slug>"',
                )
                continue
            if slug not in projects:
                report.error(
                    path,
                    f"{label}: unknown project {slug!r}",
                    "use a slug from projects/ (course status lists them)",
                )
                continue
            toml_path = projects[slug] / "project.toml"
            try:
                with open(toml_path, "rb") as f:
                    meta = tomllib.load(f)
            except (OSError, ValueError):
                continue
            if reviewer in people_of(meta, "developers"):
                report.error(
                    path,
                    f"{label}: {reviewer} would review their own project {slug}",
                    "assign another reviewer",
                )


def run_check(root: Path, slugs: list[str] | None = None) -> Report:
    """Check the named projects (all if none); repo-wide rules run when no slug is named."""
    report = Report(root)
    loaded = load_projects(root, slugs)
    for project in loaded:
        check_project(report, project)
    if not slugs:
        projects = (root / "projects").resolve()
        outside = [f for f in tracked_files(root) if projects not in f.resolve().parents]
        check_pickles(report, outside)
        check_shared_utils(report)
        check_assignments(report)
    return report


def main(root: Path, slugs: list[str]) -> int:
    """CLI entry: print one line per issue and a summary; 0 only when nothing failed."""
    report = run_check(root, slugs)
    for issue in report.errors + report.warnings:
        print(issue.line())
    checked = len(slugs) if slugs else len(load_projects(root))
    summary = (
        f"course check: {checked} project(s), {len(report.errors)} error(s), "
        f"{len(report.warnings)} warning(s)"
    )
    print(summary)
    return 1 if report.errors else 0
