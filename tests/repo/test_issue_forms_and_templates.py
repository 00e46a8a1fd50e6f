"""Issue forms, PR template, CODEOWNERS, review and topic templates have what the course needs."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from workflow_policy import (
    GITHUB,
    ISSUE_TEMPLATES,
    ROOT,
    TOPICS,
    check_issue_form,
    checklists,
    field,
    load_yaml,
)

FORMS = {
    "review_finding.yml": {
        "project",
        "version",
        "severity",
        "location",
        "found",
        "expected",
        "suggested_fix",
    },
    "bug_report.yml": {"component", "steps", "actual", "expected", "environment"},
    "project_proposal.yml": {
        "paper_title",
        "paper_url",
        "authors_venue_year",
        "topic",
        "datasets",
        "datasets_offline",
        "developers",
        "target_result",
    },
}
OPTIONAL = {"suggested_fix"}  # present but not required


def check_jsonschema() -> str:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return str(exe) if exe.exists() else (shutil.which("check-jsonschema") or "")


@pytest.mark.parametrize("name", sorted(FORMS))
def test_issue_form_fields(name):
    form = load_yaml(ISSUE_TEMPLATES / name)
    assert check_issue_form(form, FORMS[name] - OPTIONAL, name) == []
    ids = [item.get("id") for item in form["body"] if "id" in item]
    assert FORMS[name] <= set(ids)
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_review_finding_form_choices_and_label():
    form = load_yaml(ISSUE_TEMPLATES / "review_finding.yml")
    assert "review-finding" in form["labels"]
    assert field(form, "version")["attributes"]["options"] == ["v1", "v2"]
    assert field(form, "severity")["attributes"]["options"] == ["major", "minor", "nit"]


def test_proposal_topics_are_the_course_topics():
    form = load_yaml(ISSUE_TEMPLATES / "project_proposal.yml")
    assert field(form, "topic")["attributes"]["options"] == TOPICS


def test_topics_match_the_course_schema():
    schema = ROOT / "course" / "project_schema.json"
    if not schema.is_file():
        pytest.skip("course/project_schema.json not present")
    assert set(TOPICS) <= set(re.findall(r'"([a-z-]+)"', schema.read_text()))


def test_issue_chooser_config():
    config = load_yaml(ISSUE_TEMPLATES / "config.yml")
    assert config["blank_issues_enabled"] is False
    assert any("CONTRIBUTING.md" in link["url"] for link in config["contact_links"])


@pytest.mark.parametrize(
    "schema, files",
    [
        ("vendor.github-issue-forms", sorted(FORMS)),
        ("vendor.github-issue-config", ["config.yml"]),
    ],
)
def test_issue_files_match_published_schema(schema, files):
    exe = check_jsonschema()
    if not exe:
        pytest.skip("check-jsonschema is not installed")
    result = subprocess.run(
        [exe, "--builtin-schema", schema, *(str(ISSUE_TEMPLATES / f) for f in files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_form_checker_catches_a_missing_or_optional_field():
    form = load_yaml(ISSUE_TEMPLATES / "review_finding.yml")
    form["body"] = [i for i in form["body"] if i.get("id") != "severity"]
    field(form, "found")["validations"]["required"] = False
    problems = check_issue_form(form, FORMS["review_finding.yml"] - OPTIONAL)
    assert any("`severity`" in p for p in problems)
    assert any("`found` must be required" in p for p in problems)


def test_pull_request_template_has_v1_and_v2_checklists():
    text = (GITHUB / "PULL_REQUEST_TEMPLATE.md").read_text()
    lists = checklists(text)
    v1 = next(items for title, items in lists.items() if title.lower().startswith("v1"))
    v2 = next(items for title, items in lists.items() if title.lower().startswith("v2"))
    assert len(v1) >= 5 and len(v2) >= 3
    assert any("course check" in item for item in v1)
    assert any("REVIEW.md" in item and "Response" in item for item in v2)
    assert any("review" in title.lower() for title in lists if title not in ("v1", "v2"))


def test_checklist_parser_sees_missing_items():
    assert checklists("## v1 submission checklist\n- [ ] a\n## v2 submission\ntext\n") == {
        "v1 submission checklist": ["a"],
        "v2 submission": [],
    }


def test_codeowners_lines():
    owners = {}
    for line in (GITHUB / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *who = line.split()
            assert who and all(re.match(r"^@[\w.-]+(/[\w.-]+)?$", w) for w in who), line
            owners[pattern] = who
    for path in ("/shared_utils/", "/course/", "/templates/", "/.github/"):
        assert any(w.endswith("/instructors") for w in owners[path]), path
    assert "# /projects/<slug>/" in (GITHUB / "CODEOWNERS").read_text()


def test_review_template_format():
    text = (ROOT / "templates" / "REVIEW.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# Review: <project title>"
    header = "Project: <slug> · Version reviewed: v1 · Reviewer: <name> · Date: YYYY-MM-DD"
    assert lines[1] == header
    assert lines[2] == "Status: pending"
    headings = [line[3:] for line in lines if line.startswith("## ")]
    assert headings == ["Summary", "Criteria", "Findings", "Verdict"]
    for criterion in (
        "Faithful to the paper",
        "Reproducible on the reviewer's machine",
        "Results comparable to the paper's",
        "Clear code and notebook",
    ):
        assert re.search(rf"^\| {re.escape(criterion)} \|", text, re.M), criterion
    assert "| criterion | rating (1-5) | comment |" in text
    labels = ("Issue:", "Severity: major | minor | nit", "Where:", "Found:", "Expected:")
    labels += ("Response (v2):",)
    positions = [text.index(f"\n- {label}") for label in labels]
    assert positions == sorted(positions), "the fields of a finding, in their order"
    assert "accept | minor revision | major revision" in lines[-1]
    assert text.count("<!--") == text.count("-->") >= 4


def test_review_template_parses_with_course_tools():
    projects = pytest.importorskip("course.projects")
    review = projects.parse_review((ROOT / "templates" / "REVIEW.md").read_text())
    assert review.status == "pending"
    assert review.sections == ["Summary", "Criteria", "Findings", "Verdict"]
    assert len(review.criteria) == 4
    # the placeholder finding is either ignored or counts as unanswered, never as answered
    assert all(f.state == "open" for f in review.findings)
    assert review.verdict == "accept | minor revision | major revision"


def test_topic_summary_template_sections():
    text = (ROOT / "templates" / "topic_summary.md").read_text()
    headings = [line[3:].lower() for line in text.splitlines() if line.startswith("## ")]
    for needed in (
        "motivation",
        "background and notation",
        "core models",
        "comparisons and trade-offs",
        "open problems",
        "references",
        "figures",
        "use of llms",
        "contributors",
        "licence",
    ):
        assert any(needed in h for h in headings), needed
    for symbol in (r"$x", r"$z", r"p_\theta", r"q_\phi", r"D_{\mathrm{KL}}", r"\mathbb{E}"):
        assert symbol in text, symbol
    for role in ("Primary authors", "Contributors", "Reviewers"):
        assert f"**{role}:**" in text
    assert "MIT" in text


def test_assignments_are_valid():
    data = tomllib.loads((ROOT / "reviews" / "assignments.toml").read_text())
    rounds = data["round"]
    assert [r["name"] for r in rounds][0] == "v1-review"
    for rnd in rounds:
        assert rnd["due"]  # a TOML date
        for item in rnd["assignment"]:
            assert set(item) == {"reviewer", "project"}
            assert "<" not in item["reviewer"] and re.match(
                r"^[a-z][a-z0-9_]{1,31}$", item["project"]
            )
            assert (ROOT / "projects" / item["project"]).is_dir(), item["project"]
    assigned = {(a["project"]) for a in rounds[0]["assignment"]}
    assert {"vae", "made", "pixelcnn"} <= assigned


def test_review_index_is_generated_not_committed():
    """reviews/index.md is what `course status` makes of assignments.toml and the REVIEW.md
    files: never kept by hand (it went stale), never committed (two review pull requests that
    each regenerated it would conflict, and its overdue flags change with the date)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert git("ls-files", "--error-unmatch", "reviews/index.md").returncode != 0, "tracked"
    assert git("check-ignore", "-q", "reviews/index.md").returncode == 0, "not ignored"
    status = pytest.importorskip("course.status")
    index = status.review_index(ROOT, datetime.date(2026, 12, 1))
    data = tomllib.loads((ROOT / "reviews" / "assignments.toml").read_text())
    for item in data["round"][0]["assignment"]:
        row = f"| {item['project']} | v1-review | {item['reviewer']} | {data['round'][0]['due']} |"
        assert row in index, row
        assert f"(../projects/{item['project']}/REVIEW.md)" in index


def test_docs_name_the_commands():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for target in ("setup", "demo", "test", "lint", "bench", "site", "status", "check"):
        assert f"make {target}" in text, target
    for sub in ("new", "check", "run", "status", "site", "catalog"):
        assert f"course {sub}" in text, sub
    guide = (ROOT / "reviews" / "README.md").read_text()
    for criterion in ("Faithful to the paper", "Reproducible", "Results comparable", "Clear code"):
        assert criterion in guide
    assert "both" in guide and "course status" in guide and "at least one week" in guide


def test_relative_links_resolve():
    """Every relative markdown link in the files of this part of the repo points to a file."""
    files = [
        ROOT / "CONTRIBUTING.md",
        ROOT / "reviews" / "README.md",
        ROOT / "reviews" / "topic_summaries.md",
    ]
    for path in files:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target or target.startswith(("mailto:", "<")) or "<slug>" in target:
                continue
            resolved = (path.parent / target).resolve()
            if "REVIEW.md" in target and "projects" in target:
                resolved = resolved.parent  # written by the reviewer later; the project must exist
            assert resolved.exists(), f"{path.name}: {target}"
