"""`course check` on the fixture repository and on copies broken in one way each.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ERROR_LINE = re.compile(r"^\S+: (?!warning: ).+ -> .+$")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _edit_notebook(path: Path, change: Callable[[dict], None]) -> None:
    nb = json.loads(path.read_text())
    change(nb)
    path.write_text(json.dumps(nb, indent=1))


def _drop_section(nb: dict, heading: str) -> None:
    nb["cells"] = [c for c in nb["cells"] if not "".join(c["source"]).startswith(heading)]


def _untag(nb: dict, tag: str) -> None:
    for cell in nb["cells"]:
        cell["metadata"]["tags"] = [t for t in cell["metadata"].get("tags", []) if t != tag]


def _unexecute(nb: dict) -> None:
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["execution_count"] = None
            cell["outputs"] = []


def test_fixture_repo_passes(repo, course):
    rc, out = course("check", "--root", repo)
    assert rc == 0, out
    assert "2 project(s), 0 error(s)" in out


def test_named_projects_only_and_unknown_slug(repo, course):
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0 and "1 project(s)" in out
    rc, out = course("check", "nope", "--root", repo)
    assert rc == 1 and "no project folder projects/nope" in out


def _break(repo: Path, case: str) -> None:
    alpha, beta = repo / "projects" / "alpha", repo / "projects" / "beta"
    ckpt = alpha / "checkpoints"
    vendor = alpha / "alpha" / "vendor"
    if case == "invalid toml":
        _edit(alpha / "project.toml", 'version = "v2"', "version = v2 oops")
    elif case == "schema violation":
        _edit(alpha / "project.toml", 'topic = "latent-variable"', 'topic = "astrology"')
    elif case == "ours without command":
        _edit(alpha / "project.toml", 'command = "python -m alpha.evaluate', 'cmd = "x')
    elif case == "paper without source":
        _edit(alpha / "project.toml", "paper_source =", "source =")
    elif case == "week does not match topic":
        _edit(alpha / "project.toml", "week = 4", "week = 9")
    elif case == "slug differs from folder":
        _edit(alpha / "project.toml", 'slug = "alpha"', 'slug = "gamma"')
    elif case == "missing checkpoint of a result":
        _edit(
            alpha / "project.toml", 'checkpoint = "checkpoints/alpha', 'checkpoint = "checkpoints/x'
        )
    elif case == "v2 without results":
        text = (alpha / "project.toml").read_text()
        (alpha / "project.toml").write_text(text.split("[[results]]")[0])
    elif case == "TODO in v2":
        _edit(alpha / "README.md", "A fixture project.", "TODO: describe")
    elif case == "notebook not JSON":
        (alpha / "alpha.ipynb").write_text("{ not json")
    elif case == "notebook too large":
        with open(alpha / "alpha.ipynb", "r+b") as f:
            f.truncate(3 * 1024 * 1024 + 1)  # sparse
    elif case == "missing section":
        _edit_notebook(alpha / "alpha.ipynb", lambda nb: _drop_section(nb, "## Discussion"))
    elif case == "sections out of order":
        _edit(alpha / "alpha.ipynb", "## Data", "## Model-x")
        _edit(alpha / "alpha.ipynb", "## Model\\n", "## Data\\n")
    elif case == "missing parameters cell":
        _edit_notebook(alpha / "alpha.ipynb", lambda nb: _untag(nb, "parameters"))
    elif case == "missing card cell":
        _edit_notebook(alpha / "alpha.ipynb", lambda nb: _untag(nb, "card"))
    elif case == "wrong kernel":
        _edit_notebook(
            alpha / "alpha.ipynb", lambda nb: nb["metadata"]["kernelspec"].update(name="julia")
        )
    elif case == "v2 notebook without outputs":
        _edit_notebook(alpha / "alpha.ipynb", _unexecute)
    elif case == "missing files":
        (alpha / "README.md").unlink()
        (alpha / "tests" / "test_alpha.py").unlink()
    elif case == "pickle checkpoint":
        (ckpt / "alpha.pt").write_bytes(b"\x80\x04K\x01.")
    elif case == "checkpoint named .pt":
        (ckpt / "alpha.pt").write_bytes(b"not a pickle, still not a safetensors file\n")
    elif case == "sidecar in the old layout":
        _edit(ckpt / "alpha.json", '"model"', '"config"')
    elif case == "sidecar with a wrong type":
        _edit(ckpt / "alpha.json", '"step": 10', '"step": "ten"')
    elif case == "sha256 mismatch":
        data = bytearray((ckpt / "alpha.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (ckpt / "alpha.safetensors").write_bytes(bytes(data))
    elif case == "sidecar missing":
        (ckpt / "alpha.json").unlink()
    elif case == "oversize checkpoint":
        with open(ckpt / "big.safetensors", "wb") as f:
            f.truncate(10 * 1024 * 1024 + 1)  # sparse
    elif case == "non-permissive vendored licence":
        (vendor / "LICENSE").write_text(
            "Creative Commons Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)\n"
        )
    elif case == "GPL vendored licence":
        (vendor / "LICENSE").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n")
    elif case == "vendored file without licence":
        (vendor / "LICENSE").unlink()
    elif case == "vendored file without source header":
        _edit(vendor / "tinyutil.py", "# Source: https://example.org/tinyutil/tinyutil.py", "#")
    elif case == "v2 review with an unanswered finding":
        _edit(
            alpha / "REVIEW.md",
            "- Response (v2): addressed in #12",
            "- Response (v2): addressed in <commit/PR> | declined: <reason>",
        )
    elif case == "v2 review declined without reason":
        _edit(
            alpha / "REVIEW.md",
            "declined: the course budget is 30 CPU-minutes per project",
            "declined:",
        )
    elif case == "v2 review still pending":
        _edit(alpha / "REVIEW.md", "Status: submitted", "Status: pending")
    elif case == "review section missing":
        _edit(beta / "REVIEW.md", "## Verdict", "## Conclusion")
    elif case == "submitted review without ratings":
        _edit(
            alpha / "REVIEW.md",
            "| Faithful to the paper | 4 | F1 |",
            "| Faithful to the paper | | |",
        )
    elif case == "assignments name an unknown project":
        _edit(repo / "reviews" / "assignments.toml", 'project = "beta"', 'project = "gamma"')
    elif case == "reviewer reviews own project":
        _edit(repo / "reviews" / "assignments.toml", "Grace Hopper", "Ada Lovelace")
    elif case == "shared_utils module without origin":
        (repo / "shared_utils" / "extra.py").write_text('"""No attribution here."""\n')
    elif case == "symlink to a system file":
        (alpha / "passwd").symlink_to("/etc/passwd")
    elif case == "notebook linked from another project":
        (beta / "beta.ipynb").unlink()
        (beta / "beta.ipynb").symlink_to(alpha / "alpha.ipynb")
    elif case == "floor without ours":
        _edit(alpha / "project.toml", "ours = 90.12", "floor = 0.5")
    else:
        raise AssertionError(case)


CASES = {
    "invalid toml": "projects/alpha/project.toml: ",
    "schema violation": "topic: 'astrology' is not one of",
    "ours without command": "`ours` is given without `command`",
    "paper without source": "results[0]: `paper` is given without `paper_source`",
    "floor without ours": "results[0]: `floor` is given without `ours`",
    "symlink to a system file": "passwd: a symbolic link (to /etc/passwd)",
    "notebook linked from another project": "beta.ipynb: a symbolic link (to ",
    "week does not match topic": "week 9 does not teach topic 'latent-variable'",
    "slug differs from folder": "slug 'gamma' differs from the folder name",
    "missing checkpoint of a result": "checkpoints/x.safetensors does not exist",
    "v2 without results": "no [[results]] rows yet",
    "TODO in v2": "projects/alpha/README.md: 1 TODO/TBD/FIXME marker(s) left",
    "notebook not JSON": "projects/alpha/alpha.ipynb: not valid JSON",
    "notebook too large": "notebook is 3.0 MB (limit 3 MB)",
    "missing section": "section '## Discussion' missing",
    "sections out of order": "section '## Model' out of order",
    "missing parameters cell": "0 cells tagged 'parameters'",
    "missing card cell": "0 cells tagged 'card'",
    "wrong kernel": "kernelspec is 'julia'",
    "v2 notebook without outputs": "code cell(s) not executed",
    "missing files": "projects/alpha/README.md: missing",
    "pickle checkpoint": "alpha.pt: a pickle (protocol 4): loading it runs code",
    "checkpoint named .pt": "alpha.pt: pickle-based checkpoint (.pt) is not allowed",
    "sidecar in the old layout": "alpha.json: uses the old sidecar layout ('config')",
    "sidecar with a wrong type": "alpha.json: field 'step' is 'ten', not int",
    "sha256 mismatch": "alpha.safetensors: sha256 does not match alpha.json",
    "sidecar missing": "sidecar alpha.json missing",
    "oversize checkpoint": "big.safetensors: 10.0 MB (limit 10 MB)",
    "non-permissive vendored licence": "licence is not permissive",
    "GPL vendored licence": "licence is not permissive",
    "vendored file without licence": "vendored file without a LICENSE/LICENCE file",
    "vendored file without source header": "tinyutil.py: vendored file does not name its source",
    "v2 review with an unanswered finding": "F1 (Wrong sign in eq. 2) has no Response",
    "v2 review declined without reason": "F2: Response 'declined:' does not parse",
    "v2 review still pending": "a v2 project needs a submitted review",
    "review section missing": "section '## Verdict' missing or out of order",
    "submitted review without ratings": "criterion 'Faithful to the paper' has no rating 1-5",
    "assignments name an unknown project": "unknown project 'gamma'",
    "reviewer reviews own project": "Ada Lovelace would review their own project alpha",
    "shared_utils module without origin": "extra.py: module docstring has no 'Origin:' line",
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_project_fails_with_one_line_fix(repo, course, case):
    _break(repo, case)
    rc, out = course("check", "--root", repo)
    assert rc == 1, out
    assert CASES[case] in out, out
    errors = [line for line in out.splitlines()[:-1] if ": warning: " not in line]
    assert errors and all(ERROR_LINE.match(line) for line in errors), out


def test_a_new_number_needs_no_shared_file_updated(repo, course):
    """Results live in project.toml only (the site and `course catalog` read them), so changing
    one, as a project pull request does, leaves nothing outside the project to regenerate."""
    _edit(repo / "projects" / "alpha" / "project.toml", "ours = 90.12", "ours = 91.5")
    before = (repo / "README.md").read_text()
    rc, out = course("check", "--root", repo)
    assert rc == 0, out
    assert (repo / "README.md").read_text() == before


def test_missing_files_also_named(repo, course):
    _break(repo, "missing files")
    _, out = course("check", "--root", repo)
    assert "projects/alpha/tests: no tests/test_*.py" in out


def test_warnings_do_not_fail_a_v1_project(repo, course):
    _edit(repo / "projects" / "beta" / "README.md", "A fixture project.", "TODO: describe")
    rc, out = course("check", "--root", repo)
    assert rc == 0, out
    assert "projects/beta/README.md: warning: 1 TODO/TBD/FIXME marker(s) left" in out


def test_v1_notebook_without_outputs_is_allowed(repo, course):
    _edit_notebook(repo / "projects" / "beta" / "beta.ipynb", _unexecute)
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 0, out


def test_v1_with_checkpoint_needs_outputs(repo, course):
    beta = repo / "projects" / "beta"
    _edit_notebook(beta / "beta.ipynb", _unexecute)
    (beta / "checkpoints").mkdir()
    for name in ("alpha.safetensors", "alpha.json"):
        src = repo / "projects" / "alpha" / "checkpoints" / name
        (beta / "checkpoints" / name.replace("alpha", "beta")).write_bytes(src.read_bytes())
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 1 and "code cell(s) not executed" in out, out


def test_permissive_licences_pass(repo, course):
    licence = repo / "projects" / "alpha" / "alpha" / "vendor" / "LICENSE"
    for text in (
        "BSD 3-Clause License\nRedistribution and use in source and binary forms ...",
        "Apache License\nVersion 2.0, January 2004",
        "This is free and unencumbered software released into the public domain.",
    ):
        licence.write_text(text)
        rc, out = course("check", "alpha", "--root", repo)
        assert rc == 0, (text, out)


def test_result_row_without_paper_number_is_allowed(repo, course):
    toml = repo / "projects" / "alpha" / "project.toml"
    text = toml.read_text()
    toml.write_text(
        text.replace("paper = 86.76\n", "").replace("paper_source =", "# paper_source =")
    )
    rc, out = course("check", "alpha", "--root", repo)
    assert rc == 0, out


def test_missing_project_toml(repo, course):
    (repo / "projects" / "beta" / "project.toml").unlink()
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 1 and "projects/beta/project.toml: missing -> add it" in out


def test_root_is_found_from_a_subfolder(repo, course, monkeypatch):
    monkeypatch.chdir(repo / "projects" / "alpha" / "alpha")
    rc, out = course("check")
    assert rc == 0, out


def test_not_a_course_repo(tmp_path, course, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out = course("check")
    assert rc == 1 and "no course repository above" in out
    rc, out = course("check", "--root", tmp_path)
    assert rc == 1 and "no projects/ folder there" in out
