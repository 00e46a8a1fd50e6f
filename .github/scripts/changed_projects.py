"""List the projects a pull request touches, for the notebooks workflow.

A project is touched when a file under `projects/<slug>/` changed and `projects/<slug>/project.toml`
still exists (a deleted project has nothing to run). A change to shared code that every notebook
runs through (shared_utils/, course/, conftest.py, pyproject.toml, requirements*.txt, Makefile, the
notebooks workflow or this script) selects every project.

Usage:
    python .github/scripts/changed_projects.py --all
    python .github/scripts/changed_projects.py --base <sha> [--head HEAD]
    git diff --name-only A B | python .github/scripts/changed_projects.py --paths-from -
Prints the slugs, space separated; with --github-output also writes `projects` (JSON list),
`slugs` (space separated), `count` and `notebooks` (their notebooks, space separated, for one
pytest run) to the file named by $GITHUB_OUTPUT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLUG = re.compile(r"[a-z][a-z0-9_]{1,31}")  # fullmatch: "$" would let a trailing "\n" through
WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {
    f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)
}
NOTEBOOK = re.compile(r"[A-Za-z0-9_.-]+\.ipynb")
# Paths whose change can break any notebook: run them all.
SHARED = re.compile(
    r"^(shared_utils/|course/|conftest\.py$|pyproject\.toml$|requirements[^/]*\.txt$|Makefile$"
    r"|\.github/workflows/notebooks\.yml$|\.github/scripts/changed_projects\.py$)"
)


def all_projects(root: Path = ROOT) -> list[str]:
    """Every project folder with a project.toml, sorted."""
    return sorted(
        p.parent.name
        for p in (root / "projects").glob("*/project.toml")
        if SLUG.fullmatch(p.parent.name) and p.parent.name not in WINDOWS_RESERVED
    )


def notebooks_of(slugs: Iterable[str], root: Path = ROOT) -> list[str]:
    """The notebooks of these projects (`projects/<slug>/*.ipynb`, repo-relative), for one pytest
    run over all of them. Names that a shell would split or expand are left out with a warning
    (`course check` requires the notebook to be `<slug>.ipynb`)."""
    out = []
    for slug in slugs:
        for path in sorted((root / "projects" / slug).glob("*.ipynb")):
            if NOTEBOOK.fullmatch(path.name):
                out.append(f"projects/{slug}/{path.name}")
            else:
                print(
                    f"changed_projects: skipped {path.name!r}: rename it {slug}.ipynb",
                    file=sys.stderr,
                )
    return out


def projects_from_paths(paths: Iterable[str], existing: Iterable[str]) -> list[str]:
    """Slugs of `existing` projects that the changed `paths` (repo-relative, '/') touch."""
    existing = sorted(set(existing))
    touched: set[str] = set()
    for path in paths:
        path = path.strip().removeprefix("./")
        if not path:
            continue
        if SHARED.match(path):
            return existing
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "projects":
            touched.add(parts[1])
    return [slug for slug in existing if slug in touched]


def changed_paths(base: str, head: str) -> list[str]:
    """Files that differ between the merge base of `base` and `head`, and `head`."""
    out = subprocess.run(
        ["git", "diff", "--name-only", "--no-renames", f"{base}...{head}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="every project")
    group.add_argument("--base", help="base commit of the pull request")
    group.add_argument("--paths-from", help="file with changed paths, one a line ('-' = stdin)")
    parser.add_argument("--head", default="HEAD", help="head commit (default HEAD)")
    parser.add_argument("--github-output", action="store_true", help="write $GITHUB_OUTPUT")
    args = parser.parse_args(argv)

    existing = all_projects()
    if args.all:
        slugs = existing
    elif args.base:
        slugs = projects_from_paths(changed_paths(args.base, args.head), existing)
    else:
        stream = sys.stdin if args.paths_from == "-" else open(args.paths_from, encoding="utf-8")
        with stream:
            slugs = projects_from_paths(stream.read().splitlines(), existing)

    print(" ".join(slugs))
    if args.github_output:
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.write(f"projects={json.dumps(slugs)}\n")
            out.write(f"slugs={' '.join(slugs)}\n")
            out.write(f"count={len(slugs)}\n")
            out.write(f"notebooks={' '.join(notebooks_of(slugs))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
