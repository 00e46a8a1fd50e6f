"""Policy checks for the repository's GitHub workflows, issue forms and pre-commit config.

The published JSON schemas (checked with check-jsonschema) say whether a file is well formed; the
functions here say whether it follows the course's rules: least privilege, no
`pull_request_target`, a time limit on every job, pip caching, cancellation of superseded PR runs,
pinned actions and no untrusted event text expanded inside a shell script. Each function returns a
list of violations (empty = compliant) so that a test can also feed it a bad file and see it fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
ISSUE_TEMPLATES = GITHUB / "ISSUE_TEMPLATE"

PYTHON_VERSION = "3.11"
# `uses: owner/repo@ref`: a major tag (v4), a full tag (v4.1.2) or a 40-hex commit.
PINNED_REF = re.compile(r"^(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
# Event fields a pull request author controls; they must reach a shell only through `env:`.
UNTRUSTED = re.compile(
    r"\$\{\{[^}]*github\.(event\.(pull_request\.(title|body|head\.ref|head\.label)|issue\.(title"
    r"|body)|comment\.body|review\.body|head_commit\.message|commits)|head_ref)[^}]*\}\}"
)
TOPICS = [
    "autoregressive",
    "latent-variable",
    "flows",
    "gans",
    "ebm",
    "discrete-latent-hybrid",
    "diffusion-score",
]


def load_yaml(path: Path | str) -> Any:
    """Parse a YAML file (safe loader)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def triggers(workflow: dict) -> dict[str, Any]:
    """The workflow's `on:` as a dict of event -> config (PyYAML reads a bare `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return dict(on or {})


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith("${{")


def check_workflow(workflow: dict, name: str = "workflow") -> list[str]:
    """Violations of the course's workflow policy in one parsed workflow file."""
    problems: list[str] = []
    if not isinstance(workflow, dict):
        return [f"{name}: not a mapping"]
    on = triggers(workflow)
    if not on:
        problems.append(f"{name}: no `on:` triggers")
    if "pull_request_target" in on:
        problems.append(f"{name}: uses pull_request_target (runs PR code with a write token)")

    if workflow.get("permissions") != {"contents": "read"}:
        problems.append(
            f"{name}: top-level permissions must be exactly `contents: read`, "
            f"got {workflow.get('permissions')!r}"
        )

    if "pull_request" in on:
        concurrency = workflow.get("concurrency")
        if not isinstance(concurrency, dict) or not concurrency.get("group"):
            problems.append(f"{name}: PR workflow without a concurrency group")
        else:
            cancel = concurrency.get("cancel-in-progress")
            if not (cancel is True or (_is_expression(cancel) and "pull_request" in cancel)):
                problems.append(f"{name}: PR runs must set concurrency cancel-in-progress")

    jobs = workflow.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        problems.append(f"{name}: no jobs")
        return problems
    for job_id, job in jobs.items():
        where = f"{name}: job {job_id}"
        if not isinstance(job, dict):
            problems.append(f"{where}: not a mapping")
            continue
        timeout = job.get("timeout-minutes")
        if not (isinstance(timeout, int) and 0 < timeout <= 360) and not _is_expression(timeout):
            problems.append(f"{where}: needs timeout-minutes (1-360)")
        permissions = job.get("permissions")
        if isinstance(permissions, str) and permissions != "read-all":
            problems.append(f"{where}: permissions {permissions!r}; grant single scopes instead")
        if isinstance(permissions, dict) and permissions.get("contents") == "write":
            problems.append(f"{where}: contents: write is not needed by any course workflow")
        if "uses" in job:  # a reusable workflow call
            problems.extend(_check_uses(job["uses"], where))
        for index, step in enumerate(job.get("steps") or []):
            problems.extend(_check_step(step, f"{where} step {index + 1}"))
    return problems


def _check_uses(uses: str, where: str) -> list[str]:
    if uses.startswith(("./", "docker://")):
        return []
    action, _, ref = uses.partition("@")
    if not ref:
        return [f"{where}: `{uses}` is not pinned to a version"]
    if not PINNED_REF.match(ref):
        return [f"{where}: `{uses}` must be pinned to a release tag or a commit, not {ref!r}"]
    return []


def _check_step(step: Any, where: str) -> list[str]:
    if not isinstance(step, dict):
        return [f"{where}: not a mapping"]
    problems: list[str] = []
    uses = step.get("uses")
    if uses:
        problems.extend(_check_uses(uses, where))
        if uses.split("@")[0] == "actions/setup-python":
            inputs = step.get("with") or {}
            if str(inputs.get("python-version")) != PYTHON_VERSION:
                problems.append(f"{where}: setup-python must use Python {PYTHON_VERSION}")
            if inputs.get("cache") != "pip":
                problems.append(f"{where}: setup-python must set `cache: pip`")
            if "requirements" not in str(inputs.get("cache-dependency-path", "")):
                problems.append(f"{where}: setup-python cache-dependency-path: requirements*.txt")
    run = step.get("run")
    if isinstance(run, str) and UNTRUSTED.search(run):
        problems.append(f"{where}: untrusted event text expanded in `run:`; pass it via env")
    return problems


def check_issue_form(form: dict, required_ids: set[str], name: str = "form") -> list[str]:
    """Violations in an issue form: fields missing (by id), or required ones not marked required."""
    problems: list[str] = []
    for key in ("name", "description", "body"):
        if not form.get(key):
            problems.append(f"{name}: missing `{key}`")
    ids = {item.get("id") for item in form.get("body") or [] if isinstance(item, dict)}
    for missing in sorted(required_ids - ids):
        problems.append(f"{name}: no field with id `{missing}`")
    for item in form.get("body") or []:
        if isinstance(item, dict) and item.get("id") in required_ids:
            if item.get("type") == "checkboxes":
                continue
            if not (item.get("validations") or {}).get("required"):
                problems.append(f"{name}: field `{item['id']}` must be required")
    return problems


def field(form: dict, field_id: str) -> dict:
    """The body element of an issue form with this id."""
    for item in form.get("body") or []:
        if isinstance(item, dict) and item.get("id") == field_id:
            return item
    raise KeyError(field_id)


def checklists(markdown: str) -> dict[str, list[str]]:
    """`## ` headings of a markdown file -> the `- [ ]` items under each."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None and re.match(r"^\s*- \[ \] ", line):
            sections[current].append(line.split("] ", 1)[1])
    return sections


def hook_ids(config: dict) -> dict[str, dict]:
    """Hook id -> hook definition across all repos of a parsed .pre-commit-config.yaml."""
    return {
        hook["id"]: hook for repo in config.get("repos") or [] for hook in repo.get("hooks") or []
    }
