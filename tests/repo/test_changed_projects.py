"""The notebooks workflow runs the projects a PR touches (all of them after shared edits)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from workflow_policy import ROOT

SCRIPT = ROOT / ".github" / "scripts" / "changed_projects.py"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("changed_projects", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXISTING = ["made", "pixelcnn", "vae"]


@pytest.mark.parametrize(
    "paths, expected",
    [
        (["projects/vae/vae/model.py"], ["vae"]),
        (["projects/vae/README.md", "projects/made/made.ipynb"], ["made", "vae"]),
        (["README.md", "reviews/index.md", "CONTRIBUTING.md"], []),
        (["projects/README.md"], []),  # not inside a project folder
        (["projects/gone/model.py"], []),  # a deleted project has nothing to run
        (["shared_utils/data.py"], EXISTING),
        (["requirements-dev.txt"], EXISTING),
        (["course/check.py", "projects/vae/x.py"], EXISTING),
        ([".github/workflows/notebooks.yml"], EXISTING),
        ([".github/workflows/lint.yml"], []),
        (["./projects/pixelcnn/tests/test_masks.py", ""], ["pixelcnn"]),
    ],
)
def test_projects_from_paths(cp, paths, expected):
    assert cp.projects_from_paths(paths, EXISTING) == expected


def test_github_output(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--paths-from", "-", "--github-output"],
        input="projects/vae/vae/model.py\n",
        env={"GITHUB_OUTPUT": str(out), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    expected = ["vae"] if (ROOT / "projects" / "vae" / "project.toml").exists() else []
    assert json.loads(lines["projects"]) == expected
    assert lines["count"] == str(len(expected))
    assert lines["notebooks"] == " ".join(f"projects/{s}/{s}.ipynb" for s in expected)


def test_notebooks_of_the_selected_projects_for_one_pytest_run(cp, tmp_path, capsys):
    for slug, names in (("good", ["good.ipynb", "extra.ipynb"]), ("odd", ["my notebook.ipynb"])):
        folder = tmp_path / "projects" / slug
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("{}")
    notebooks = cp.notebooks_of(["good", "odd"], tmp_path)
    assert notebooks == ["projects/good/extra.ipynb", "projects/good/good.ipynb"]
    assert "skipped 'my notebook.ipynb': rename it odd.ipynb" in capsys.readouterr().err


def test_only_valid_slugs_count_as_projects(cp, tmp_path):
    for name in ("good", "abc\n", "con", "Bad", "x"):
        folder = tmp_path / "projects" / name
        folder.mkdir(parents=True)
        (folder / "project.toml").write_text("")
    assert cp.all_projects(tmp_path) == ["good"]
