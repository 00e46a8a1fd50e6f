"""REVIEW.md's strict format: every way of writing a review that `course check` once let through.

Origin: written for dgm-course (MIT licence).

The fixture's alpha is a v2 project with a submitted review of two findings, both answered; each
case below changes it in one way and expects one error line naming the line and the fix.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from course.reviews import parse_review, response_state

REPO_ROOT = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^\S+: (?!warning: ).+ -> .+$")
F1 = """### F1: Wrong sign in eq. 2
- Issue: https://github.com/dgm-course/dgm-course/issues/10
- Severity: major
- Where: alpha/model.py
- Found: the KL term is added twice.
- Expected: once, as in eq. 2.
- Response (v2): addressed in #12
"""


def _review(repo: Path) -> Path:
    return repo / "projects" / "alpha" / "REVIEW.md"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _findings(repo: Path, body: str) -> None:
    """Replace everything under '## Findings' with ``body``."""
    path = _review(repo)
    head, rest = path.read_text().split("## Findings\n", 1)
    path.write_text(
        head + "## Findings\n\n" + body + "\n## Verdict" + rest.split("## Verdict", 1)[1]
    )


CASES = {
    # headings that are not '### F<n>: <title>' used to hide the findings: a v2 with 0 findings
    "### Finding 1 heading": (
        lambda r: _findings(r, F1.replace("### F1:", "### Finding 1:")),
        "REVIEW.md:20: '### Finding 1: Wrong sign in eq. 2' is not a finding heading",
    ),
    "#### F1 heading": (
        lambda r: _findings(r, F1.replace("### F1:", "#### F1:")),
        "REVIEW.md:20: '#### F1: Wrong sign in eq. 2' is not a finding heading",
    ),
    "bold finding title": (
        lambda r: _findings(r, F1.replace("### F1: Wrong sign in eq. 2", "**F1: Wrong sign**")),
        "'**F1: Wrong sign**' under Findings does not parse",
    ),
    "finding indented as a code block": (
        lambda r: _findings(r, "    " + F1.replace("\n", "\n    ")),
        "under Findings does not parse",
    ),
    "finding hidden in a comment": (
        lambda r: _findings(r, "<!--\n" + F1 + "-->\n"),
        "no findings and no 'No findings.'",
    ),
    "loose paragraph under Findings": (
        lambda r: _edit(_review(r), "### F2:", "Also the budget is small.\n\n### F2:"),
        "'Also the budget is small.' under Findings does not parse",
    ),
    "an unknown field": (
        lambda r: _edit(_review(r), "- Where: alpha/model.py", "- Location: alpha/model.py"),
        "F1: 'Location: alpha/model.py' is not a field",
    ),
    "findings numbered with a gap": (
        lambda r: _edit(_review(r), "### F2:", "### F3:"),
        "F3 where F2 was expected",
    ),
    "findings in a section of their own": (
        lambda r: _edit(_review(r), "## Verdict", "## More findings\n\n" + F1 + "\n## Verdict"),
        "section '## More findings' is unknown",
    ),
    # responses
    "bare addressed": (
        lambda r: _edit(_review(r), "addressed in #12", "addressed"),
        "F1: Response 'addressed' does not parse",
    ),
    "declined without a real reason": (
        lambda r: _edit(
            _review(r), "declined: the course budget is 30 CPU-minutes per project", "declined: no"
        ),
        "F2: Response 'declined: no' does not parse",
    ),
    "response with text after it": (
        lambda r: _edit(_review(r), "addressed in #12\n", "addressed in #12\nand more\n"),
        "F1: Response 'addressed in #12\\nand more' does not parse",
    ),
    # the reviewer and the issues
    "reviewer not assigned": (
        lambda r: _edit(_review(r), "Reviewer: Grace Hopper", "Reviewer: Mallory"),
        "REVIEW.md:2: Reviewer 'Mallory' is not assigned to alpha in reviews/assignments.toml "
        "(assigned: Grace Hopper)",
    ),
    "finding without its issue": (
        lambda r: _edit(
            _review(r), "- Issue: https://github.com/dgm-course/dgm-course/issues/10\n", ""
        ),
        "F1: no Issue field",
    ),
    "issue given as a number": (
        lambda r: _edit(_review(r), "https://github.com/dgm-course/dgm-course/issues/10", "#10"),
        "F1: Issue '#10' is not a link to one GitHub issue",
    ),
    "issue link to a pull request": (
        lambda r: _edit(_review(r), "dgm-course/issues/10", "dgm-course/pull/10"),
        "is not a link to one GitHub issue",
    ),
    "two findings, one issue": (
        lambda r: _edit(_review(r), "dgm-course/issues/11", "dgm-course/issues/10"),
        "F2: Issue https://github.com/dgm-course/dgm-course/issues/10 is also F1's",
    ),
    "issues of two repositories": (
        lambda r: _edit(_review(r), "dgm-course/dgm-course/issues/11", "someone/fork/issues/11"),
        "the findings link issues of 2 repositories",
    ),
    "issue of another repository than the course's": (
        lambda r: (r / "reviews" / "assignments.toml").write_text(
            'repository = "course/dgm"\n' + (r / "reviews" / "assignments.toml").read_text()
        ),
        "F1: Issue links dgm-course/dgm-course, not the course repository course/dgm",
    ),
    # ratings and the rest of a submitted review
    "rating written as a fraction": (
        lambda r: _edit(
            _review(r), "| Faithful to the paper | 4 |", "| Faithful to the paper | 4/5 |"
        ),
        "'Faithful to the paper' rating '4/5' is not a whole number",
    ),
    "rating out of range": (
        lambda r: _edit(
            _review(r), "| Faithful to the paper | 4 |", "| Faithful to the paper | 7 |"
        ),
        "criterion 'Faithful to the paper' has no rating 1-5",
    ),
    "rating without a comment": (
        lambda r: _edit(_review(r), "| 5 | ran in 2 minutes |", "| 5 | |"),
        "criterion 'Reproducible on the reviewer's machine' has no comment",
    ),
    "a criterion of its own": (
        lambda r: _edit(_review(r), "| Clear code", "| Novelty | 5 | great |\n| Clear code"),
        "criterion 'Novelty' is not a rubric criterion",
    ),
    "placeholder finding left in a submitted review": (
        lambda r: _edit(_review(r), "### F2: Budget too small", "### F2: <short title>"),
        "F2 is still the template's placeholder",
    ),
    "undated review": (
        lambda r: _edit(_review(r), "Date: 2026-11-20", "Date: YYYY-MM-DD"),
        "Date 'YYYY-MM-DD' is not YYYY-MM-DD",
    ),
    "empty summary": (
        lambda r: _edit(
            _review(r),
            "The project implements the model faithfully; the NLL is a few nats above the paper's.",
            "",
        ),
        "the Summary is empty",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_review_that_does_not_fit_the_format_fails_with_one_line(repo, course, case):
    change, expected = CASES[case]
    change(repo)
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 1, out
    assert expected in out, out
    errors = [line for line in out.splitlines()[:-1] if ": warning: " not in line]
    assert errors and all(ERROR_LINE.match(line) for line in errors), out


def test_the_fixture_review_passes(repo, course):
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0, out


def test_no_findings_is_a_review_too(repo, course):
    _findings(repo, "No findings.\n")
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0, out
    _findings(repo, "No findings.\n\n" + F1)
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 1 and "'No findings.' and findings" in out


def test_responses_that_name_a_commit_pr_or_url_pass(repo, course):
    for response in (
        "addressed in 3f2c1ab",
        "addressed in #12 and #14",
        "addressed in https://github.com/dgm-course/dgm-course/pull/12 (renamed the loss)",
        "addressed in [#12](https://github.com/dgm-course/dgm-course/pull/12)",
        "declined: the paper's own code does the same",
    ):
        assert response_state(response) in ("addressed", "declined"), response
        text = _review(repo).read_text()
        _review(repo).write_text(
            re.sub(r"(?m)^- Response \(v2\): .*$", f"- Response (v2): {response}", text, count=1)
        )
        rc, out = course("check", "alpha", "--root", repo)
        assert rc == 0, (response, out)


def test_a_commit_that_is_not_in_the_history_fails(repo, course):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo, capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "course")
    real = git("rev-parse", "--short", "HEAD")
    _edit(_review(repo), "addressed in #12", f"addressed in {real}")
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0, out
    fake = "0" * 7 if real != "0" * 7 else "1" * 7
    _edit(_review(repo), f"addressed in {real}", f"addressed in {fake}")
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 1 and f"F1: commit {fake} is not in this repository's history" in out, out


def test_pending_reviews_from_the_template_pass(repo, course):
    """A project's REVIEW.md starts as the template, before or after this format was made strict."""
    beta = repo / "projects" / "beta" / "REVIEW.md"
    for template in (REPO_ROOT / "templates" / "REVIEW.md", None):
        if template is not None:
            beta.write_text(
                template.read_text()
                .replace("<project title>", "Beta model")
                .replace("<slug>", "beta")
            )
        rc, out = course("check", "beta", "--root", repo)
        assert rc == 0, out


def test_the_template_parses_without_problems():
    review = parse_review((REPO_ROOT / "templates" / "REVIEW.md").read_text())
    assert review.problems == []
    assert review.status == "pending"
    assert [f.ident for f in review.findings] == ["F1"] and review.written == []
    assert set(review.findings[0].fields) == {
        "issue", "severity", "where", "found", "expected", "response (v2)",
    }  # fmt: skip


def test_what_renders_is_what_is_parsed():
    """A field list continues over lines and may hold a code block; both stay in the finding."""
    review = parse_review(
        "# Review: X\nProject: x · Version reviewed: v1 · Reviewer: A · Date: 2026-01-02\n"
        "Status: submitted\n\n## Summary\n\nText.\n\n## Criteria\n\n## Findings\n\n"
        "### F1: Title\n- Issue: https://github.com/o/r/issues/1\n- Severity: minor\n"
        "- Where: a.py:1\n- Found: it prints\n  two lines:\n\n      $ python -m x\n      1.5\n\n"
        "- Expected: one.\n- Response (v2): addressed in #2\n\n## Verdict\n\naccept\n"
    )
    assert review.problems == []
    (finding,) = review.findings
    assert finding.fields["found"] == "it prints\ntwo lines:"
    assert finding.issue == "https://github.com/o/r/issues/1" and finding.state == "addressed"
    assert review.date.isoformat() == "2026-01-02" and review.verdict == "accept"


def test_angle_brackets_in_a_finding_are_text_not_template_slots(repo, course):
    _edit(
        _review(repo),
        "- Found: the KL term is added twice.",
        "- Found: the mask tests `i <= j` where eq. 4 needs `i < j` and `j > 0`.",
    )
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0, out
    _edit(_review(repo), "- Where: alpha/model.py", "- Where: <file / notebook cell>")
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 1 and "F1: Where is not filled in" in out, out
