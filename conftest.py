"""Repo-wide pytest set-up: project packages importable by their slug; notebook wall times reported.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
for project in sorted((ROOT / "projects").glob("*/")):
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    try:
        yield
    finally:
        if str(item.fspath).endswith(".ipynb"):
            _NOTEBOOK_SECONDS[os.path.relpath(str(item.fspath), ROOT)] += (
                time.perf_counter() - start
            )


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook wall time (cells executed by nbval)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")
