"""`course site`: the course site in build/site, built by Sphinx with MyST-NB and sphinx-book-theme.

Origin: written for dgm-course (MIT licence). MathJax 3 (Apache-2.0) is fetched from the npm
registry once, checked against its sha256 and served from the site's own _static folder.

The site is built from what is committed (notebooks with their stored outputs, never executed):
a page per project (its README with a generated header: papers, people, links to its notebook,
source folder, review and checkpoint files, its results; its notebook as a child page), a results
table across all projects, a page per course topic (its projects and its topic summary from
topics/<topic>/README.md when there is one), the contributor and reviewer guides, and the review
index of the day the site is built (`course status --format markdown`; never committed).

Sphinx reads a staging folder, build/site-src, that mirrors the repository's layout: copies of the
pages and the files they show (weights excepted), so every relative link in a README or a guide
means what it means on GitHub, plus the generated pages; course.site_ext turns links to repository
files that are not pages into links to the repository. Every Sphinx warning (a broken link, a missing image) fails the
build, so a pull request cannot break the site unnoticed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from course.projects import (
    TOPIC_WEEKS,
    CourseError,
    Project,
    readable_projects,
    sort_key,
)
from course.site_conf import COURSE_CSS
from course.site_ext import TOPIC_TITLES
from course.sitecheck import check_links
from course.status import review_index
from shared_utils.fileio import sha256_file

MATHJAX_VERSION = "3.2.2"
MATHJAX_SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
# What the pages need from the package: the TeX-to-HTML bundle with every TeX extension, its
# fonts, the lazily loaded menu and accessibility parts, and the licence.
MATHJAX_PARTS = (
    "es5/tex-chtml-full.js",
    "es5/output/chtml/fonts/woff-v2/",
    "es5/ui/",
    "es5/a11y/",
    "LICENSE",
)
GUIDES = (
    ("CONTRIBUTING.md", "CONTRIBUTING"),
    ("CONVENTIONS.md", "CONVENTIONS"),
    ("reviews/README.md", "reviews/README"),
    ("reviews/topic_summaries.md", "reviews/topic_summaries"),
)
SKIP = {"runs", ".ipynb_checkpoints", "__pycache__", ".pytest_cache", ".DS_Store"}
WEIGHTS = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")

INDEX_INTRO = """\
Every project re-implements one paper in PyTorch: the model and its objective in the project's own
package, a notebook that derives and demonstrates it (shown here with the outputs of its committed
run), tests, a small trained checkpoint, and a review by a classmate. Numbers are measured in the
repository with the command given next to each one; the [results](results.md) page puts them next
to the papers'.
"""


def cache_dir() -> Path:
    """Where downloaded build inputs are kept between builds (``$XDG_CACHE_HOME/dgm-course``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dgm-course"


def _fetch_mathjax(tarball: Path) -> None:
    """``npm pack mathjax@VERSION`` into ``tarball`` (checked by the caller)."""
    npm = shutil.which("npm")
    if npm is None:
        raise CourseError(
            f"npm is needed once to fetch MathJax {MATHJAX_VERSION} for the site "
            f"(apt-get install npm), or put mathjax-{MATHJAX_VERSION}.tgz in {tarball.parent}"
        )
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", tmp, "--silent"],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            detail = (getattr(err, "stderr", "") or "").strip().splitlines()
            raise CourseError(
                f"npm pack mathjax@{MATHJAX_VERSION} failed ({detail[-1] if detail else err}); "
                "check the connection to the npm registry and run `course site` again"
            ) from err
        os.replace(Path(tmp) / f"mathjax-{MATHJAX_VERSION}.tgz", tarball)


def mathjax(cache: Path | None = None) -> Path:
    """A folder holding ``mathjax/`` (the parts of the package the site serves), made once from
    the npm package whose sha256 is pinned here."""
    cache = cache or cache_dir()
    target = cache / f"mathjax-{MATHJAX_VERSION}"
    if (target / "mathjax" / "tex-chtml-full.js").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"mathjax-{MATHJAX_VERSION}.tgz"
    if not tarball.is_file():
        _fetch_mathjax(tarball)
    actual = sha256_file(tarball)
    if actual != MATHJAX_SHA256:
        tarball.unlink()
        raise CourseError(
            f"{tarball.name} has sha256 {actual}, expected {MATHJAX_SHA256}; the file was removed: "
            "run `course site` again to fetch it anew"
        )
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".mathjax-"))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("package/")
                if not member.isfile() or not any(
                    name == part or (part.endswith("/") and name.startswith(part))
                    for part in MATHJAX_PARTS
                ):
                    continue
                out = staging / "mathjax" / name.removeprefix("es5/")
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                out.write_bytes(source.read())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def card_image(notebook: Path) -> bytes | None:
    """The PNG of the first image output of the notebook's ``card`` cell, or None."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if not isinstance(cell, dict) or "card" not in (cell.get("metadata", {}).get("tags") or []):
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png") if isinstance(output, dict) else None
            if png:
                try:
                    return base64.b64decode("".join(png) if isinstance(png, list) else str(png))
                except ValueError:
                    return None
        return None
    return None


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What the staging copy leaves out: run folders and caches, weights (the pages link them in
    the repository), and symbolic links (`course check` reports those)."""
    return {
        name
        for name in names
        if name in SKIP or name.endswith(WEIGHTS) or os.path.islink(os.path.join(folder, name))
    }


def _copy(source: Path, target: Path) -> None:
    """Copy a file or a folder (less :func:`_ignore`'s entries) into the staging folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=_ignore)
    else:
        shutil.copyfile(source, target)


def _toctree(entries: list[str], caption: str | None = None, hidden: bool = True) -> str:
    options = (":hidden:\n" if hidden else "") + (f":caption: {caption}\n" if caption else "")
    return "```{toctree}\n" + options + ":maxdepth: 2\n\n" + "\n".join(entries) + "\n```\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class Staging:
    """The source folder Sphinx reads: copies of the repository's pages and the generated ones."""

    def __init__(self, root: Path, src: Path, executed: bool) -> None:
        self.root = root
        self.src = src
        self.executed = executed
        self.pages: list[str] = []  # files (relative to src) that are pages of the site
        self.projects: list[str] = []  # slugs of the projects on the site
        self.notebooks: dict[str, str] = {}  # slug -> notebook page name (without .ipynb)
        self.folder_pages: dict[str, str] = {}  # repository folder -> its page

    def project(self, project: Project) -> bool:
        """Copy one project's files; False (and a line on stderr) when it has no README."""
        if not (project.path / "README.md").is_file():
            print(
                f"projects/{project.slug}: left out of the site: no README.md "
                "(`course check` says more)",
                file=sys.stderr,
            )
            return False
        folder = self.src / "projects" / project.slug
        _copy(project.path, folder)
        notebook = project.notebook
        executed = self.root / "build" / "notebooks" / f"{project.slug}.ipynb"
        if self.executed and executed.is_file() and notebook.is_file():
            _copy(executed, folder / notebook.name)
        self.projects.append(project.slug)
        self.pages.append(f"projects/{project.slug}/README.md")
        if notebook.is_file():
            self.pages.append(f"projects/{project.slug}/{notebook.name}")
            self.notebooks[project.slug] = notebook.stem
            png = card_image(folder / notebook.name)
            if png:
                (self.src / "_cards").mkdir(exist_ok=True)
                (self.src / "_cards" / f"{project.slug}.png").write_bytes(png)
        self.folder_pages[project.path.resolve().as_posix()] = f"projects/{project.slug}/README"
        return True

    def topic(self, topic: str, projects: list[Project]) -> None:
        """The page of one course topic: its projects and its summary, if written."""
        title = TOPIC_TITLES[topic]
        weeks = TOPIC_WEEKS[topic]
        when = f"week {weeks[0]}" if len(weeks) == 1 else f"weeks {weeks[0]}-{weeks[-1]}"
        mine = [p for p in projects if (p.meta or {}).get("topic") == topic]
        entries = [f"/projects/{p.slug}/README" for p in mine]
        summary = self.root / "topics" / topic / "README.md"
        text = f"# {title}\n\nCourse {when}.\n\n## Projects\n\n```{{course-topic}} {topic}\n```\n"
        text += "\n## Topic summary\n\n"
        if summary.is_file():
            _copy(summary.parent, self.src / "topics" / topic)
            self.pages.append(f"topics/{topic}/README.md")
            text += _toctree([f"{topic}/README"], hidden=False)
        else:
            guide = (
                "[the topic-summary guide](../reviews/topic_summaries.md)"
                if (self.root / "reviews" / "topic_summaries.md").is_file()
                else "the topic-summary guide"
            )
            text += f"Not written yet; {guide} says how to write one.\n"
        if entries:
            text += "\n" + _toctree(entries)
        _write(self.src / "topics" / f"{topic}.md", text)
        self.pages.append(f"topics/{topic}.md")
        self.folder_pages[(self.root / "topics" / topic).resolve().as_posix()] = f"topics/{topic}"

    def guides(self) -> list[str]:
        """Copy the contributor and reviewer guides that exist; their page names."""
        names = []
        for path, name in GUIDES:
            if (self.root / path).is_file():
                _copy(self.root / path, self.src / path)
                self.pages.append(path)
                names.append(name)
        if (self.root / "reviews" / "README.md").is_file():
            self.folder_pages[(self.root / "reviews").resolve().as_posix()] = "reviews/README"
        return names

    def reviews(self, today: dt.date) -> str:
        """The review index, as `course status --format markdown` prints it on this day."""
        _write(self.src / "reviews" / "index.md", review_index(self.root, today))
        self.pages.append("reviews/index.md")
        return "reviews/index"

    def conf(self, mathjax_root: Path, repo_url: str, ref: str, out: Path) -> None:
        """conf.py: the course's settings and this build's values."""
        static = self.src / "_static"
        _write(static / "course.css", COURSE_CSS)
        values = {
            "course_root": str(self.root),
            "course_repo_url": repo_url,
            "course_repo_ref": ref,
            "course_outdir": str(out),
            "course_projects": self.projects,
            "course_notebooks": self.notebooks,
            "course_folder_pages": self.folder_pages,
            "include_patterns": ["index.md", "results.md", *self.pages],
            "html_static_path": [str(static), str(mathjax_root)],
        }
        lines = ["from course.site_conf import *  # noqa: F401,F403", ""]
        lines += [f"{key} = {value!r}" for key, value in values.items()]
        _write(self.src / "conf.py", "\n".join(lines) + "\n")


def stage(
    root: Path, src: Path, out: Path, executed: bool, mathjax_root: Path, repo_url: str, ref: str
) -> None:
    """Write the staging folder ``src`` (emptied first)."""
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    staging = Staging(root, src, executed)
    projects = readable_projects(root)
    projects.sort(key=lambda p: sort_key(p.meta, p.slug))
    projects = [p for p in projects if staging.project(p)]
    for topic in TOPIC_TITLES:
        staging.topic(topic, projects)
    guides = staging.guides() + [staging.reviews(dt.date.today())]
    index = "# Deep Generative Models: course projects\n\n" + INDEX_INTRO
    index += "\n```{course-projects}\n```\n\n"
    index += _toctree([f"topics/{t}" for t in TOPIC_TITLES], caption="Topics")
    index += "\n" + _toctree(["results"], caption="Results")
    if guides:
        index += "\n" + _toctree(guides, caption="Guides")
    _write(src / "index.md", index)
    results = (
        "# Results\n\n"
        "Every `[[results]]` row of every project's `project.toml`: our number, measured in this "
        "repository with the command shown (from the project folder), next to the paper's. "
        "`course catalog` prints the same table as Markdown.\n\n"
        "```{course-results}\n```\n"
    )
    _write(src / "results.md", results)
    staging.conf(mathjax_root, repo_url, ref, out)


def _repository(repo_url: str | None, ref: str | None) -> tuple[str, str]:
    """The repository URL and ref for source links: given, or GitHub Actions' own, or none."""
    if repo_url is None and os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        repo_url = f"{server}/{os.environ['GITHUB_REPOSITORY']}"
        ref = ref or os.environ.get("GITHUB_SHA")
    if repo_url and not repo_url.startswith(("https://", "http://")):
        raise CourseError(f"--repo-url {repo_url}: give the repository's https:// address")
    return (repo_url or "").rstrip("/"), ref or "main"


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def build(
    root: Path, executed: bool = False, repo_url: str | None = None, ref: str | None = None
) -> Path:
    """Build the site into build/site; returns its index.html. Warnings fail the build."""
    from sphinx.cmd.build import build_main

    url, ref = _repository(repo_url, ref)
    src = root / "build" / "site-src"
    out = root / "build" / "site"
    doctrees = root / "build" / "site-doctrees"
    stage(root, src, out, executed, mathjax(), url, ref)
    for folder in (out, doctrees, root / "build" / "jupyter_execute"):
        shutil.rmtree(folder, ignore_errors=True)
    args = ["-b", "html", "-q", "-W", "--keep-going", "-d", str(doctrees), str(src), str(out)]
    if build_main(args) != 0:
        raise CourseError(
            "the site did not build: the problems are listed above (file:line: what; "
            "build/site-src/X is the repository's X); fix them and run `course site` again"
        )
    problems = check_links(out, root, url, ref)
    for line in problems:
        print(f"build/site/{line}", file=sys.stderr)
    if problems:
        raise CourseError(
            f"{len(problems)} broken link(s) in the built site (listed above); fix the page "
            "that has them and run `course site` again"
        )
    return out / "index.html"


def main(
    root: Path, executed: bool = False, repo_url: str | None = None, ref: str | None = None
) -> int:
    """Build the site and say where it is, how big it is and how long it took."""
    start = time.perf_counter()
    index = build(root, executed, repo_url, ref)
    seconds = time.perf_counter() - start
    size = _size(index.parent) / 1e6
    pages = len(list(index.parent.rglob("*.html")))
    where = index.relative_to(root) if root in index.parents else index
    print(f"wrote {where}: {pages} pages, {size:.1f} MB, in {seconds:.0f} s")
    return 0
