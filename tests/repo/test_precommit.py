"""The pre-commit configuration parses, has the course's hooks, and its tools are installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_policy import ROOT, hook_ids, load_yaml

CONFIG = ROOT / ".pre-commit-config.yaml"
REQUIRED = {
    "black",
    "ruff",
    "nbstripout",
    "check-added-large-files",
    "check-json",
    "check-yaml",
    "check-toml",
    "end-of-file-fixer",
    "trailing-whitespace",
    "check-github-workflows",
    "check-github-issue-forms",
    "course-check",
    "forbid-pickles",
}
VENV_EXEC = ROOT / ".github" / "scripts" / "venv-exec"


@pytest.fixture(scope="module")
def hooks():
    return hook_ids(load_yaml(CONFIG))


def test_required_hooks_present(hooks):
    assert REQUIRED <= set(hooks), REQUIRED - set(hooks)


def test_config_validates():
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "No module named pre_commit" in result.stderr:
        pytest.skip("pre-commit not installed")
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_hooks_are_local_and_offline():
    config = load_yaml(CONFIG)
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    for hook in config["repos"][0]["hooks"]:
        assert hook["language"] in ("system", "unsupported", "fail"), hook["id"]
        assert "additional_dependencies" not in hook


def test_global_excludes(hooks):
    exclude = re.compile(load_yaml(CONFIG)["exclude"])
    for path in ("build/site/index.html", "data/MNIST/raw/x", ".venv/bin/black", "runs/a.csv"):
        assert exclude.search(path), path
    for path in ("projects/vae/vae.ipynb", "shared_utils/data.py", "reviews/README.md"):
        assert not exclude.search(path), path


def test_hook_arguments(hooks):
    assert "--maxkb=10240" in hooks["check-added-large-files"]["entry"]
    assert "--enforce-all" in hooks["check-added-large-files"]["entry"]
    assert "jupyter" in hooks["black"]["types_or"] and "jupyter" in hooks["ruff"]["types_or"]
    nbstripout = hooks["nbstripout"]["entry"]
    assert "--keep-output" in nbstripout and "--keep-count" in nbstripout
    for hook_id in ("end-of-file-fixer", "trailing-whitespace"):
        assert re.search(hooks[hook_id]["exclude"], "projects/vae/vae.ipynb")
    pickles = hooks["forbid-pickles"]
    assert pickles["entry"].endswith("course pickles") and pickles.get("pass_filenames", True)
    assert "files" not in pickles  # every file, whatever its name
    course = hooks["course-check"]
    assert course["entry"].endswith("course check") and course["pass_filenames"] is False
    assert "vendor.github-workflows" in hooks["check-github-workflows"]["entry"]
    assert "vendor.github-issue-forms" in hooks["check-github-issue-forms"]["entry"]
    forms = re.compile(hooks["check-github-issue-forms"]["files"])
    assert forms.search(".github/ISSUE_TEMPLATE/review_finding.yml")
    assert not forms.search(".github/ISSUE_TEMPLATE/config.yml")


def test_hook_tools_are_installed(hooks):
    """Each tool named after venv-exec exists in the environment running the tests."""
    bindir = Path(sys.executable).parent
    for hook_id, hook in hooks.items():
        words = hook["entry"].split()
        if hook["language"] == "fail" or hook_id == "course-check":
            continue
        assert words[:2] == ["sh", ".github/scripts/venv-exec"], hook_id
        assert (bindir / words[2]).exists(), f"{hook_id}: {words[2]} not in {bindir}"


def test_venv_exec_prefers_the_venv_and_reports_missing_tools(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    if (ROOT / ".venv" / "bin" / "ruff").exists():
        out = subprocess.run(
            ["sh", str(VENV_EXEC), "ruff", "--version"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout.startswith("ruff"), out.stderr
    missing = subprocess.run(
        ["sh", str(VENV_EXEC), "no-such-tool-xyz"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 127 and "make setup" in missing.stderr


def test_nbstripout_keeps_tags_outputs_counts_and_run_times(tmp_path):
    """`course status` reads when the committed notebook ran from the cells' `execution` timing
    (what `jupyter nbconvert --execute` records); other volatile metadata goes."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1", execution_count=1)
    timing = {
        "iopub.execute_input": "2026-01-01T10:00:00.000001Z",
        "iopub.status.busy": "2026-01-01T10:00:00.000001Z",
        "iopub.status.idle": "2026-01-01T10:00:02.000001Z",
        "shell.execute_reply": "2026-01-01T10:00:02.000001Z",
    }
    cell.metadata = {"tags": ["parameters"], "execution": timing, "scrolled": True}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    card = nbformat.v4.new_code_cell("print(2)", execution_count=2)
    card.metadata = {"tags": ["card"], "ExecuteTime": {"end_time": "x"}, "collapsed": False}
    nb.cells = [cell, card]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    entry = hook_ids(load_yaml(CONFIG))["nbstripout"]["entry"]
    args = _shell_split(entry)[3:]  # after: sh venv-exec nbstripout
    exe = Path(sys.executable).parent / "nbstripout"
    if not exe.exists():
        pytest.skip("nbstripout not installed")
    subprocess.run([str(exe), *args, str(path)], check=True, timeout=60)
    out = nbformat.read(path, as_version=4)
    assert out.cells[0].metadata == {"tags": ["parameters"], "execution": timing}
    assert out.cells[1].metadata == {"tags": ["card"]}
    assert out.cells[0].outputs[0]["text"] == "1\n" and out.cells[0].execution_count == 1
    assert out.metadata["kernelspec"]["name"] == "python3"


def _shell_split(entry: str) -> list[str]:
    import shlex

    return shlex.split(entry)
