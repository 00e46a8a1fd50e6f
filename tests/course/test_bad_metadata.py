"""One project.toml with wrong types or bytes must not stop any command for the other projects:
each command names that project in one line and goes on."""

from __future__ import annotations

import re

import pytest

BREAKAGES = {
    "topic is a list": lambda s: re.sub(r"^topic = .*$", 'topic = ["flows"]', s, flags=re.M),
    "results is a number": lambda s: re.sub(r"\n\[\[results\]\].*", "", s, flags=re.S).replace(
        'slug = "alpha"', 'slug = "alpha"\nresults = 5'
    ),
    "papers is a number": lambda s: re.sub(
        r"\n\[\[papers\]\].*?(?=\n\[)", "", s, flags=re.S
    ).replace('slug = "alpha"', 'slug = "alpha"\npapers = 5'),
    "authors is a number": lambda s: re.sub(
        r"^authors = .*$", "authors = 5", s, count=1, flags=re.M
    ),
}


def _break(repo, case):
    toml = repo / "projects" / "alpha" / "project.toml"
    if case == "invalid UTF-8":
        toml.write_bytes(toml.read_bytes().replace(b'title = "', b'title = "\xff\xfe', 1))
    else:
        toml.write_text(BREAKAGES[case](toml.read_text()))


@pytest.mark.parametrize("case", [*BREAKAGES, "invalid UTF-8"])
def test_every_command_reports_the_broken_project_and_goes_on(repo, course, case):
    _break(repo, case)
    rc, out = course("check", "--root", repo)
    assert rc == 1 and "Traceback" not in out
    assert re.search(r"projects/alpha/project.toml: .* -> ", out), out

    rc, out = course("status", "--root", repo)
    assert rc == 0 and re.search(r"^alpha \(!\)", out, re.M) and re.search(r"^beta ", out, re.M)
    rc, out = course("status", "--format", "json", "--root", repo)
    assert rc == 0 and '"slug": "beta"' in out
    assert "not UTF-8" in out or "does not fit the schema" in out

    for command in (("catalog",), ("site",)):
        rc, out = course(*command, "--root", repo)
        assert rc == 0, out
        skipped = [line for line in out.splitlines() if line.startswith("projects/alpha: skipped")]
        assert len(skipped) == 1, out
    assert "Beta model" in course("catalog", "--root", repo)[1]


def test_invalid_utf8_is_named_readably(repo, course):
    _break(repo, "invalid UTF-8")
    _, out = course("catalog", "--root", repo)
    assert "project.toml is not UTF-8 text" in out
