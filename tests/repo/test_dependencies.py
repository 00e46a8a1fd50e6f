"""pyproject.toml's dependency ranges and the exact pins of requirements*.txt agree.

`make setup` installs the pins; `pip install -e ".[dev]"` the ranges. Every pinned package must be
declared (runtime pins as dependencies, development pins in the `dev` extra) with a range that the
pin satisfies, so that both ways of installing give a working checkout.
"""

from __future__ import annotations

import tomllib
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
