"""`course new`: start a project folder from templates/project/, names filled in.

Origin: written for dgm-course (MIT licence).

The skeleton is a tiny working project (an independent-pixel Bernoulli model), so a student starts
from something that already passes `course check`, its tests and the smoke notebook run. The model
and its objective live in one file, `<slug>/model.py`, behind a small contract that the commands
(train, evaluate, sample, bench), the plumbing tests and the notebook's plumbing cells use, so a
student replaces that file (and the tests of its math) rather than building the plumbing. The
slug becomes a folder name and a Python import name shared by every project on one sys.path,
hence the strict rules on it. The new folder, with an empty `checkpoints/` (a .gitkeep keeps it
in git), is assembled in a hidden temporary folder and renamed into place, so a failure leaves
nothing.
"""

from __future__ import annotations

import builtins
import datetime as dt
import importlib.util
import json
import keyword
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from course.projects import SLUG_RE, TOPIC_WEEKS, WINDOWS_RESERVED, CourseError

# Names that would shadow a module a project, the tests or the tooling import.
RESERVED = {
    "course",
    "shared_utils",
    "projects",
    "templates",
    "reviews",
    "tests",
    "test",
    "build",
    "data",
    "conftest",
    "setup",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "matplotlib",
    "safetensors",
    "pytest",
    "jupyter",
    "notebook",
    "ipykernel",
    "nbformat",
    "nbclient",
    "nbconvert",
    "nbval",
    "tqdm",
    "black",
    "ruff",
    "jsonschema",
}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".json", ".ipynb", ".yml", ".yaml"}
SKIP = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", "runs", ".DS_Store"}

FALLBACK_REVIEW = """# Review: <project title>
Project: <slug> · Version reviewed: v1 · Reviewer: <name> · Date: YYYY-MM-DD
Status: pending

## Summary
<!-- What the project implements and how well, in a few sentences. -->

## Criteria
| criterion | rating (1-5) | comment |
|---|---|---|
| Faithful to the paper | | |
| Reproducible on the reviewer's machine | | |
| Results comparable to the paper's | | |
| Clear code and notebook | | |

## Findings
<!-- One block per finding (the format is in reviews/README.md), or the line "No findings." -->

### F1: <short title>
- Issue: <URL of the finding's issue>
- Severity: major | minor | nit
- Where: <file / notebook cell>
- Found: <what you observed>
- Expected: <what should happen>
- Response (v2): addressed in <commit/PR> | declined: <reason>

## Verdict
accept | minor revision | major revision
"""


def validate_slug(slug: str, root: Path) -> None:
    """Raise :class:`CourseError` unless ``slug`` is a safe, free, non-shadowing import name."""
    if slug in WINDOWS_RESERVED:
        raise CourseError(
            f"slug {slug!r} is a Windows device name: the folder could not be checked out there; "
            "choose another name"
        )
    if not SLUG_RE.fullmatch(slug or ""):
        raise CourseError(
            f"slug {slug!r} is not allowed: use 2-32 characters a-z, 0-9, _ starting with a letter "
            "(e.g. ddpm, real_nvp)"
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug) or slug in dir(builtins):
        raise CourseError(f"slug {slug!r} is a Python keyword or builtin; choose another name")
    if slug in RESERVED or slug in sys.stdlib_module_names:
        raise CourseError(f"slug {slug!r} would shadow the module {slug!r}; choose another name")
    if (root / "projects" / slug).exists():
        raise CourseError(f"projects/{slug} already exists; choose another slug")
    try:
        spec = importlib.util.find_spec(slug)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin not in (None, "namespace"):
        raise CourseError(f"slug {slug!r} would shadow the installed module at {spec.origin}")


def _one_line(name: str, value: str, max_len: int = 200) -> str:
    value = value.strip()
    if not value or len(value) > max_len or any(ord(c) < 32 for c in value):
        raise CourseError(f"--{name} must be one non-empty line of at most {max_len} characters")
    return value


def resolve_topic_week(topic: str | None, week: int | None) -> tuple[str, int, bool]:
    """(topic, week, guessed): fill one from the other; both absent -> a TODO default."""
    if topic is not None and topic not in TOPIC_WEEKS:
        raise CourseError(f"--topic {topic!r} unknown; choose one of {', '.join(TOPIC_WEEKS)}")
    if week is not None and not any(week in weeks for weeks in TOPIC_WEEKS.values()):
        raise CourseError(f"--week {week}: projects belong to weeks 3-12")
    if topic and week is not None:
        if week not in TOPIC_WEEKS[topic]:
            weeks = "/".join(map(str, TOPIC_WEEKS[topic]))
            raise CourseError(f"--week {week} does not teach {topic}; use --week {weeks}")
        return topic, week, False
    if topic:
        return topic, TOPIC_WEEKS[topic][0], False
    if week is not None:
        return next(t for t, ws in TOPIC_WEEKS.items() if week in ws), week, False
    return "autoregressive", 3, True


def _toml_str(value: str) -> str:
    """Escape for the inside of a TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def review_text(root: Path, slug: str, title: str) -> str:
    """templates/REVIEW.md (or the built-in copy of its format) for this project, Status pending."""
    template = root / "templates" / "REVIEW.md"
    text = template.read_text(encoding="utf-8") if template.is_file() else FALLBACK_REVIEW
    text = text.replace("<project title>", title).replace("<slug>", slug)
    text = re.sub(r"(?m)^(\**Status:?\**:?)\s*.*$", r"\1 pending", text, count=1)
    return text


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _fill_notebook(text: str, values: dict[str, str]) -> str:
    """Replace placeholders inside the notebook's strings (so JSON escaping stays right)."""
    nb = json.loads(text)

    def walk(obj):
        if isinstance(obj, str):
            return _substitute(obj, values)
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        return obj

    return json.dumps(walk(nb), indent=1, ensure_ascii=False) + "\n"


def create_project(
    root: Path,
    slug: str,
    title: str,
    paper_url: str,
    topic: str | None = None,
    week: int | None = None,
    developer: str | None = None,
) -> Path:
    """Copy the template into projects/<slug>/ with every placeholder filled; return the folder."""
    validate_slug(slug, root)
    title = _one_line("title", title)
    if not re.match(r"^https?://[^\s\"'<>\\]+$", paper_url or ""):
        raise CourseError(
            "--paper-url must be an http(s) URL, e.g. https://arxiv.org/abs/1312.6114"
        )
    developer = _one_line("developer", developer) if developer else "TODO: your name"
    topic, week, guessed = resolve_topic_week(topic, week)
    template = root / "templates" / "project"
    if not template.is_dir():
        raise CourseError(f"{template} is missing; restore templates/project from git")

    raw = {
        "__slug__": slug,
        "__title__": title,
        "__paper_url__": paper_url,
        "__topic__": topic,
        "__developer__": developer,
        "__year__": str(dt.date.today().year),
        "__date__": dt.date.today().isoformat(),
        "__topic_note__": (
            "TODO: check topic and week (none was given)"
            if guessed
            else "course week: see CONVENTIONS.md"
        ),
    }
    toml_values = {k: _toml_str(v) if k != "__topic_note__" else v for k, v in raw.items()}
    toml_values = {'"__week__"': str(week), '"__year__"': raw["__year__"], **toml_values}
    values = {"__week__": str(week), **raw}

    target = root / "projects" / slug
    staging = Path(tempfile.mkdtemp(prefix=f".new-{slug}-", dir=root / "projects"))
    try:
        build = staging / slug
        for src in sorted(template.rglob("*")):
            parts = src.relative_to(template).parts
            if any(p in SKIP or p.endswith(".pyc") for p in parts):
                continue
            dest = build.joinpath(*(p.replace("__slug__", slug) for p in parts))
            if src.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix not in TEXT_SUFFIXES:
                shutil.copy2(src, dest)
                continue
            text = src.read_text(encoding="utf-8")
            if src.suffix == ".ipynb":
                text = _fill_notebook(text, values)
            elif src.suffix == ".toml":
                text = _substitute(text, toml_values)
            else:
                text = _substitute(text, values)
            dest.write_text(text, encoding="utf-8")
        (build / "REVIEW.md").write_text(review_text(root, slug, title), encoding="utf-8")
        (build / "checkpoints").mkdir(exist_ok=True)
        (build / "checkpoints" / ".gitkeep").touch()
        os.rename(build, target)
    except FileExistsError as err:
        raise CourseError(f"projects/{slug} already exists; choose another slug") from err
    except OSError as err:
        raise CourseError(f"could not create projects/{slug}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(
    root: Path,
    slug: str,
    title: str,
    paper_url: str,
    topic: str | None,
    week: int | None,
    developer: str | None,
) -> int:
    """CLI entry: create the project and print what to do next."""
    create_project(root, slug, title, paper_url, topic, week, developer)
    print(f"created projects/{slug}/")
    print("next:")
    print(f"  course check {slug}                      # TODO markers show up as warnings")
    print(
        f"  edit projects/{slug}/{slug}/model.py: the paper's model and objective (contract on top)"
    )
    print(f"  cd projects/{slug} && python -m {slug}.train --help && python -m pytest tests")
    print(
        f"  DGM_SMOKE=1 python -m pytest --nbval-lax --nbval-current-env projects/{slug}/{slug}.ipynb"
    )
    return 0
