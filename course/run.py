"""`course run`: execute project notebooks headlessly and keep the executed copies.

Origin: written for dgm-course (MIT licence). Execution with nbclient (BSD-3-Clause, used as a
dependency).

Each notebook runs in a fresh python3 kernel with the project folder as working directory, exactly
as "Restart & Run All" would. The committed notebook is never modified: the executed copy goes to
build/notebooks/<slug>.ipynb (`course site --executed` shows it on the course site instead of the
committed one), and the wall time to build/run_times.json (shown by `course status`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.projects import CourseError, load_projects, rel


@dataclass
class RunResult:
    """What happened to one notebook."""

    slug: str
    seconds: float
    ok: bool
    error: str | None = None


def _kernel_env(smoke: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # a non-interactive backend would suppress the inline figures
    env.pop("DGM_SMOKE", None)
    if smoke:
        env["DGM_SMOKE"] = "1"
    return env


def _brief_error(err: BaseException) -> str:
    """The exception name and message of a failing cell, without the traceback."""
    ename = getattr(err, "ename", None)
    evalue = getattr(err, "evalue", None)
    if ename:
        return f"{ename}: {evalue}".strip().splitlines()[0][:300]
    text = str(err).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def execute_notebook(path: Path, timeout: float, smoke: bool) -> tuple[Any, str | None]:
    """Run ``path`` top to bottom; returns (executed notebook, error or None).

    ``timeout`` bounds the whole notebook: each cell gets what is left of it.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        # The kernel listens on localhost only; at log level ERROR it does not print its start-up
        # warning "Kernel is running over TCP without encryption" (three per `make demo`).
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        timeout=max(1, int(timeout)),
        kernel_name="python3",
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    deadline = time.monotonic() + timeout
    error: str | None = None
    try:
        client.reset_execution_trackers()
        with client.setup_kernel(env=_kernel_env(smoke), cwd=str(path.parent)):
            for index, cell in enumerate(nb.cells):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CellTimeoutError(f"notebook exceeded --timeout {timeout:g} s")
                client.timeout = max(1, int(left))
                try:
                    client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                except CellTimeoutError:
                    error = f"cell {index}: timed out (--timeout {timeout:g} s for the notebook)"
                    break
                except CellExecutionError as err:
                    error = f"cell {index}: {_brief_error(err)}"
                    break
    except CellTimeoutError as err:
        error = str(err)
    except DeadKernelError as err:
        error = f"kernel died ({_brief_error(err)})"
    except Exception as err:  # kernel start-up failures come in many types
        error = f"could not run the notebook ({type(err).__name__}: {_brief_error(err)})"
    return nb, error


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def record_times(root: Path, results: list[RunResult], smoke: bool) -> None:
    """Merge this run's results into build/run_times.json."""
    path = root / "build" / "run_times.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for r in results:
        data[r.slug] = {"seconds": round(r.seconds, 2), "smoke": smoke, "ok": r.ok, "when": when}
    _write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(root: Path, slugs: list[str], smoke: bool, timeout: float) -> int:
    """Run the notebooks (all projects if none named); non-zero if any failed."""
    import nbformat

    if timeout <= 0:
        raise CourseError("--timeout must be a positive number of seconds")
    projects = load_projects(root, slugs or None)
    if not projects:
        print("no projects to run")
        return 0
    results: list[RunResult] = []
    for project in projects:
        path = project.notebook
        if not path.is_file():
            print(f"{rel(path, root)}: FAILED notebook missing -> course check {project.slug}")
            results.append(RunResult(project.slug, 0.0, False, "notebook missing"))
            continue
        print(
            f"{project.slug}: running {rel(path, root)}{' (smoke)' if smoke else ''} ...",
            flush=True,
        )
        start = time.perf_counter()
        try:
            nb, error = execute_notebook(path, timeout, smoke)
        except Exception as err:  # unreadable notebook: report, go on with the others
            nb, error = None, f"cannot read the notebook ({_brief_error(err)})"
        seconds = time.perf_counter() - start
        if nb is not None:
            _write(root / "build" / "notebooks" / f"{project.slug}.ipynb", nbformat.writes(nb))
        ok = error is None
        results.append(RunResult(project.slug, seconds, ok, error))
        if ok:
            print(f"{project.slug}: ok in {seconds:.1f} s")
        else:
            print(f"{project.slug}: FAILED after {seconds:.1f} s: {error}")
    record_times(root, results, smoke)
    failed = [r.slug for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    print(
        f"course run: {len(results) - len(failed)} ok, {len(failed)} failed, {total:.1f} s in all"
    )
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0
