"""pyproject.toml's dependency ranges and the exact pins of requirements*.txt agree.

`make setup` installs the pins; `pip install -e ".[dev]"` the ranges. Every pinned package must be
declared (runtime pins as dependencies, development pins in the `dev` extra) with a range that the
pin satisfies, so that both ways of installing give a working checkout.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, Requirement]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req
    return out


def declared(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in requirements}


def test_every_pin_is_declared_with_a_range_it_satisfies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = declared(project["dependencies"]), declared(
        project["optional-dependencies"]["dev"]
    )
    for name, pin in pins(ROOT / "requirements.txt").items():
        assert name in runtime, f"{name} is pinned in requirements.txt but not a dependency"
        (version,) = [s.version for s in pin.specifier]
        assert runtime[name].specifier.contains(version), f"{name}=={version} vs {runtime[name]}"
    for name, pin in pins(ROOT / "requirements-dev.txt").items():
        assert name in dev, f"{name} is pinned in requirements-dev.txt but not in the dev extra"
        (version,) = [s.version for s in pin.specifier]
        assert dev[name].specifier.contains(version), f"{name}=={version} vs {dev[name]}"
    assert set(runtime) == set(pins(ROOT / "requirements.txt")), "a dependency without a pin"
    assert set(dev) == set(pins(ROOT / "requirements-dev.txt")), "a dev extra without a pin"


def test_the_notebook_front_end_and_the_course_tool_are_runtime_dependencies():
    # README's first use is `jupyter lab`; `course check` imports jsonschema
    runtime = pins(ROOT / "requirements.txt")
    assert {"jupyterlab", "jsonschema"} <= set(runtime)


# The repository's own packages.
FIRST_PARTY = {"shared_utils", "course"}


def _imports(package: Path) -> dict[str, set[str]]:
    """Top-level module -> the files of ``package`` that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        if "vendor" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, set()).add(path.relative_to(package.parent).as_posix())
    return found


def test_the_declared_dependencies_cover_every_import_of_the_packages():
    """`pip install -e ".[dev]"` in a fresh venv must give shared_utils and course everything they
    import, declared directly: a module that arrives only as another package's dependency can
    disappear with that package's next release."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared_names = set(declared(project["dependencies"]))
    declared_names |= set(declared(project["optional-dependencies"]["dev"]))
    providers = metadata.packages_distributions()
    missing = []
    for module, files in sorted(
        {**_imports(ROOT / "shared_utils"), **_imports(ROOT / "course")}.items()
    ):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            missing.append(f"{module} (imported by {sorted(files)[0]}) is not installed")
        elif not dists & declared_names:
            missing.append(
                f"{module} (imported by {sorted(files)[0]}) comes from {sorted(dists)}, "
                "which pyproject.toml does not declare"
            )
    assert not missing, "\n".join(missing)


def test_the_import_scan_sees_what_a_module_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        "import os\nimport yaml.loader\nfrom markdown_it import MarkdownIt\nfrom . import x\n"
        "from course.projects import rel\n"
    )
    found = _imports(package)
    assert set(found) == {"yaml", "markdown_it"}
