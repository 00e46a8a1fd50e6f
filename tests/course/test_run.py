"""`course run` on tiny fixture notebooks: executed copies, HTML, run times, failures reported.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def _project(root: Path, slug: str, *sources: str) -> None:
    folder = root / "projects" / slug
    folder.mkdir(parents=True)
    cells = [new_markdown_cell(f"# {slug}")] + [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, folder / f"{slug}.ipynb")
    (folder / "project.toml").write_text(f'slug = "{slug}"\nnotebook = "{slug}.ipynb"\n')
    (folder / "here.txt").write_text(f"cwd of {slug}")


def test_run_executes_records_and_reports_failures(tmp_path, course):
    root = tmp_path / "repo"
    (root / "projects").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    _project(
        root,
        "good",
        "import os\nprint('smoke=' + os.environ.get('DGM_SMOKE', 'unset'))",
        "print(open('here.txt').read())",
    )
    _project(root, "bad", "x = 1", "raise ValueError('boom in cell')", "print('never')")

    rc, out = course("run", "--smoke", "--root", root)
    assert rc == 1, out
    assert "good: ok in" in out
    assert "bad: FAILED" in out and "cell 2: ValueError: boom in cell" in out
    assert "Traceback" not in out

    executed = nbformat.read(root / "build" / "notebooks" / "good.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "smoke=1" in text and "cwd of good" in text
    assert not (root / "build" / "site").exists()  # the site is `course site`'s (--executed)
    assert (root / "build" / "notebooks" / "bad.ipynb").is_file()  # kept for debugging

    times = json.loads((root / "build" / "run_times.json").read_text())
    assert times["good"]["ok"] is True and times["good"]["smoke"] is True
    assert times["bad"]["ok"] is False
    assert set(times["good"]) == {"seconds", "smoke", "ok", "when"}
    # the committed notebook is left as it was
    committed = nbformat.read(root / "projects" / "good" / "good.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


def test_run_timeout_and_unknown_slug(tmp_path, course):
    root = tmp_path / "repo"
    (root / "projects").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    _project(root, "slow", "import time\ntime.sleep(120)")
    rc, out = course("run", "slow", "--timeout", "4", "--root", root)
    assert rc == 1 and "slow: FAILED" in out and "--timeout 4 s" in out, out
    times = json.loads((root / "build" / "run_times.json").read_text())
    assert times["slow"]["ok"] is False and times["slow"]["smoke"] is False
    assert times["slow"]["seconds"] < 60

    rc, out = course("run", "nope", "--root", root)
    assert rc == 1 and "no project folder projects/nope" in out
    rc, out = course("run", "slow", "--timeout", "0", "--root", root)
    assert rc == 1 and "--timeout must be a positive" in out


def test_kernels_start_without_alarming_warnings(tmp_path):
    """The kernels' own stderr reaches the terminal: no "running over TCP without encryption"."""
    import subprocess
    import sys

    root = tmp_path / "repo"
    (root / "projects").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    _project(root, "quiet", "print(1 + 1)")
    result = subprocess.run(
        [sys.executable, "-m", "course", "run", "--smoke", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "without encryption" not in result.stderr and "WARNING" not in result.stderr
