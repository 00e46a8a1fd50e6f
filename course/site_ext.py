"""Sphinx extension of the course site: pages generated from project.toml, links to the repository.

Origin: written for dgm-course (MIT licence).

Directives (their content comes from project.toml, read when the page is built, so it cannot drift
from the metadata; text is docutils text, escaped by the HTML writer):

* ``course-projects``: the home page's cards, one per project (card image, title, paper, number);
* ``course-results``: every ``[[results]]`` row of every project (see :mod:`course.catalog`);
* ``course-topic <topic>``: the projects of one course topic;
* ``course-project <slug>``: a project's header (papers, people, links to its notebook, its
  source folder, its review and its checkpoint files, its results). It is put under the first
  heading of each project's README when the page is read (``source-read``), together with a hidden
  toctree entry for the notebook, so the README itself stays as the student wrote it.

Links in READMEs, guides and notebooks that point to repository files which are not pages of the
site (``checkpoints/x.safetensors``, ``reviews/assignments.toml``, a source folder) become links to
the repository: ``<course_repo_url>/blob/<ref>/<path>`` when a repository URL is configured (CI
sets it), else a relative link from the built page to the file in the working tree (a local build
under build/site opens them from disk).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util.docutils import SphinxDirective

from course.catalog import ResultRow, project_rows
from course.projects import (
    Project,
    fmt_number,
    headline,
    load_project,
    load_projects,
    paper_short,
    people_of,
    sort_key,
)

TOPIC_TITLES = {
    "autoregressive": "Autoregressive models",
    "latent-variable": "Latent-variable models and VAEs",
    "flows": "Normalizing flows",
    "gans": "Generative adversarial networks and their evaluation",
    "ebm": "Energy-based models",
    "discrete-latent-hybrid": "Discrete-latent and hybrid models",
    "diffusion-score": "Diffusion and score-matching models",
}
README_DOC = re.compile(r"^projects/([a-z][a-z0-9_]{1,31})/README$")


# --- repository paths and links ----------------------------------------------------------------


def _root(env: Any) -> Path:
    return Path(env.config.course_root)


def repo_uri(config: Config, docname: str, path: Path) -> str:
    """The URL of a repository file or folder, as seen from the built page of ``docname``."""
    root = Path(config.course_root).resolve()
    relpath = path.resolve().relative_to(root).as_posix()
    is_dir = path.is_dir()
    base = (config.course_repo_url or "").rstrip("/")
    if base:
        kind = "tree" if is_dir else "blob"
        return f"{base}/{kind}/{config.course_repo_ref or 'main'}/{relpath}"
    page_dir = Path(config.course_outdir, docname).parent
    uri = Path(os.path.relpath(root / relpath, page_dir)).as_posix()
    return uri + "/" if is_dir and not uri.endswith("/") else uri


def _repo_ref(config: Config, docname: str, path: Path, text: str) -> nodes.Node:
    inner = nodes.literal(text, text)
    return nodes.reference("", "", inner, refuri=repo_uri(config, docname, path), internal=False)


def _doc_ref(docname: str, target: str, text: str) -> addnodes.pending_xref:
    """A link to another page of the site (``target`` is a docname, "/"-rooted)."""
    ref = addnodes.pending_xref(
        "",
        refdomain="std",
        reftype="doc",
        reftarget="/" + target.lstrip("/"),
        refexplicit=True,
        refwarn=True,
        refdoc=docname,
    )
    ref += nodes.inline(text, text)
    return ref


def _repo_folder(env: Any, docname: str) -> Path:
    """The repository folder of a page: the staging folder mirrors the repository's layout."""
    folder = Path(env.doc2path(docname)).parent.relative_to(Path(env.srcdir))
    return _root(env).resolve() / folder


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def rewrite_repo_links(app: Sphinx, doctree: nodes.document) -> None:
    """Turn links to repository files that are not pages of the site into repository links."""
    env = app.env
    docname = env.docname
    root = _root(env).resolve()
    base = _repo_folder(env, docname)
    for node in list(doctree.findall(addnodes.download_reference)):
        if node.get("reftype") != "myst":
            continue
        target = Path(os.path.normpath(base / node["reftarget"]))
        if _inside(target, root) and target.exists():
            new = nodes.reference(
                "", "", *node.children, refuri=repo_uri(app.config, docname, target)
            )
            node.replace_self(new)
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("reftype") != "myst":
            continue
        if node.get("refdomain") == "doc":  # a Markdown file or notebook that is not a page
            if node["reftarget"] in env.found_docs:
                continue
            for suffix in (".md", ".ipynb"):
                target = root / f"{node['reftarget']}{suffix}"
                if target.is_file():
                    uri = repo_uri(app.config, docname, target)
                    node.replace_self(nodes.reference("", "", *node.children, refuri=uri))
                    break
            continue
        if node.get("refdomain") not in (None, ""):
            continue
        path_part, _, fragment = str(node["reftarget"]).partition("#")
        if not path_part or re.match(r"^[a-z][a-z0-9+.-]*:", path_part):
            continue
        target = Path(os.path.normpath(base / path_part))
        if not (_inside(target, root) and target.exists()):
            continue
        page = _page_of_folder(env, target)
        if page is not None:
            new = _doc_ref(docname, page, "")
            new.children = []
            new += node.children
            node.replace_self(new)
            continue
        uri = repo_uri(app.config, docname, target) + (f"#{fragment}" if fragment else "")
        node.replace_self(nodes.reference("", "", *node.children, refuri=uri))


def _page_of_folder(env: Any, folder: Path) -> str | None:
    """The site page of a linked folder (its README), if the site has one."""
    if not folder.is_dir():
        return None
    pages = env.config.course_folder_pages or {}
    return pages.get(folder.resolve().as_posix())


# --- READMEs of projects get their header and their notebook ----------------------------------


def add_project_header(app: Sphinx, docname: str, source: list[str]) -> None:
    """Under a project README's first heading: the ``course-project`` block; at the end: the
    notebook as a child page (hidden toctree)."""
    match = README_DOC.match(docname)
    if not match:
        return
    slug = match.group(1)
    notebooks = app.config.course_notebooks or {}
    header = f"\n```{{course-project}} {slug}\n```\n"
    lines = source[0].splitlines(keepends=True)
    fence = None
    insert_at = 0
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            mark = stripped[:3]
            fence = None if fence == mark else (fence or mark)
            continue
        if fence is None and re.match(r"^# \S", line):
            insert_at = index + 1
            break
    lines.insert(insert_at, header)
    text = "".join(lines)
    if slug in notebooks:
        text += f"\n\n```{{toctree}}\n:hidden:\n\n{notebooks[slug]}\n```\n"
    source[0] = text


# --- docutils helpers --------------------------------------------------------------------------


def _para(*children: nodes.Node | str, classes: list[str] | None = None) -> nodes.paragraph:
    para = nodes.paragraph(classes=classes or [])
    for child in children:
        para += nodes.Text(child) if isinstance(child, str) else child
    return para


def _table(headers: list[str], rows: list[list[Any]], classes: list[str]) -> nodes.table:
    table = nodes.table(classes=classes)
    group = nodes.tgroup(cols=len(headers))
    table += group
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for title in headers:
        row += nodes.entry("", _para(title))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            if isinstance(cell, nodes.Element) and not isinstance(cell, nodes.Inline):
                entry += cell
            else:
                entry += _para(cell)
            row += entry
        body += row
    return table


def _paper_nodes(paper: dict[str, Any]) -> list[nodes.Node]:
    title = str(paper.get("title", "?"))
    authors = [str(a) for a in paper.get("authors") or []]
    who = paper_short({"papers": [{"authors": authors, "year": ""}]}).strip()
    where = f" ({who}, {paper.get('venue', '?')} {paper.get('year', '')})"
    url = str(paper.get("url", ""))
    if url.startswith(("https://", "http://")):
        return [nodes.reference("", title, refuri=url), nodes.Text(where)]
    return [nodes.Text(title + where)]


def _headline_text(meta: dict[str, Any]) -> str:
    row = headline(meta)
    if row is None:
        return "no results yet"
    ours = fmt_number(row["ours"]) if "ours" in row else "not measured yet"
    if "floor" in row:
        ours += f" (floor {fmt_number(row['floor'])})"
    unit = f" {row['unit']}" if row.get("unit") else ""
    return f"{row.get('metric', '')}: ours {ours} vs paper {fmt_number(row.get('paper'))}{unit}"


def _project_page(slug: str) -> str:
    return f"projects/{slug}/README"


def _result_cells(
    config: Config, docname: str, row: ResultRow, with_project: bool
) -> list[nodes.Node | str]:
    cells: list[nodes.Node | str] = []
    if with_project:
        cells.append(_para(_doc_ref(docname, _project_page(row.slug), row.title)))
    cells.append(row.label)
    cells.append(row.metric_text)
    cells.append(row.ours_text)
    paper = _para(row.paper_text)
    if row.paper_source:
        paper += nodes.Text(" ")
        paper += nodes.inline(
            f"({row.paper_source})", f"({row.paper_source})", classes=["course-meta"]
        )
    cells.append(paper)
    cells.append(row.dataset)
    cells.append(row.estimator)
    cells.append(row.budget)
    command = _para(nodes.literal(row.command, row.command) if row.command else "-")
    root = Path(config.course_root)
    checkpoint = root / "projects" / row.slug / row.checkpoint if row.checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        command += nodes.Text(" on ")
        command += _repo_ref(config, docname, checkpoint, Path(row.checkpoint).name)
    cells.append(command)
    return cells


RESULT_HEADERS = [
    "result",
    "metric",
    "ours",
    "paper's",
    "dataset",
    "estimator",
    "budget",
    "command",
]


class CourseDirective(SphinxDirective):
    """Common parts: the projects (readable project.toml), noted as dependencies of the page."""

    def projects(self) -> list[Project]:
        root = _root(self.env)
        # quietly: `course site` has already named each unreadable project.toml once
        on_site = set(self.config.course_projects or ())
        found = [p for p in load_projects(root) if p.meta is not None and p.slug in on_site]
        found.sort(key=lambda p: sort_key(p.meta, p.slug))
        for project in found:
            self.env.note_dependency(str(project.path / "project.toml"))
        return found


class ProjectsDirective(CourseDirective):
    """``course-projects``: one card per project for the home page."""

    def run(self) -> list[nodes.Node]:
        docname = self.env.docname
        grid = nodes.container(classes=["course-cards"])
        for project in self.projects():
            meta = project.meta or {}
            card = nodes.container(classes=["course-card"])
            image = Path(self.env.srcdir, "_cards", f"{project.slug}.png")
            if image.is_file():
                card += nodes.image(
                    uri=f"/_cards/{project.slug}.png", alt=f"samples of {project.slug}"
                )
            title = _doc_ref(docname, _project_page(project.slug), str(meta.get("title")))
            card += _para(title, classes=["course-card-title"])
            topic = str(meta.get("topic", ""))
            card += _para(
                f"{paper_short(meta)} · ",
                _doc_ref(docname, f"topics/{topic}", TOPIC_TITLES.get(topic, topic)),
                f" · week {meta.get('week', '?')} · {meta.get('version', '?')}",
                classes=["course-meta"],
            )
            card += _para(_headline_text(meta))
            grid += card
        if not grid.children:
            return [_para("No projects yet.")]
        return [grid]


class ResultsDirective(CourseDirective):
    """``course-results``: every result row of every project."""

    def run(self) -> list[nodes.Node]:
        docname = self.env.docname
        rows = []
        for project in self.projects():
            for row in project_rows(project.slug, project.meta or {}):
                rows.append(_result_cells(self.config, docname, row, with_project=True))
        if not rows:
            return [_para("No results yet.")]
        return [_table(["project", *RESULT_HEADERS], rows, ["course-results"])]


class TopicDirective(CourseDirective):
    """``course-topic <topic>``: the projects of one topic."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        docname = self.env.docname
        topic = self.arguments[0]
        rows = []
        for project in self.projects():
            meta = project.meta or {}
            if meta.get("topic") != topic:
                continue
            papers = [p for p in meta.get("papers") or [] if isinstance(p, dict)]
            paper = _para(*_paper_nodes(papers[0])) if papers else "-"
            rows.append(
                [
                    _para(_doc_ref(docname, _project_page(project.slug), str(meta["title"]))),
                    paper,
                    str(meta.get("week", "?")),
                    _headline_text(meta),
                ]
            )
        if not rows:
            return [_para("No project on this topic yet.")]
        return [_table(["project", "paper", "week", "headline result"], rows, ["course-topic"])]


class ProjectDirective(CourseDirective):
    """``course-project <slug>``: papers, people, links and results of one project."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        config = self.config
        docname = self.env.docname
        root = _root(self.env)
        project = load_project(root / "projects" / self.arguments[0])
        self.env.note_dependency(str(project.path / "project.toml"))
        meta = project.meta
        if meta is None:
            return [_para(f"project.toml: {project.error}")]
        box = nodes.container(classes=["course-project"])
        fields = nodes.field_list()

        def field(name: str, *body: nodes.Node | str) -> None:
            item = nodes.field()
            item += nodes.field_name(name, name)
            value = nodes.field_body()
            value += _para(*body)
            item += value
            fields.append(item)

        papers = [p for p in meta.get("papers") or [] if isinstance(p, dict)]
        for index, paper in enumerate(papers):
            field("Paper" if index == 0 else "Also", *_paper_nodes(paper))
        topic = str(meta.get("topic", ""))
        field(
            "Topic",
            _doc_ref(docname, f"topics/{topic}", TOPIC_TITLES.get(topic, topic)),
            f" (week {meta.get('week', '?')})",
        )
        field("Developers", ", ".join(people_of(meta, "developers")) or "-")
        field("Reviewers", ", ".join(people_of(meta, "reviewers")) or "not assigned yet")
        field("Version", str(meta.get("version", "?")))
        field("Datasets", ", ".join(str(d) for d in meta.get("datasets") or []))

        links: list[nodes.Node | str] = []
        notebook = project.notebook
        notebooks = config.course_notebooks or {}
        if project.slug in notebooks:
            stem = notebooks[project.slug]
            links += [_doc_ref(docname, f"projects/{project.slug}/{stem}", "notebook"), " · "]
        links.append(_repo_ref(config, docname, project.path, f"projects/{project.slug}/"))
        review = project.path / "REVIEW.md"
        if review.is_file():
            links += [" · ", _repo_ref(config, docname, review, "REVIEW.md")]
        if notebook.is_file():
            links += [" · ", _repo_ref(config, docname, notebook, notebook.name)]
        field("Files", *links)

        checkpoints = sorted((project.path / "checkpoints").glob("*.safetensors"))
        if checkpoints:
            items: list[nodes.Node | str] = []
            for weights in checkpoints:
                if items:
                    items.append(" · ")
                size = weights.stat().st_size / 1e6
                items.append(_repo_ref(config, docname, weights, weights.name))
                sidecar = weights.with_suffix(".json")
                if sidecar.is_file():
                    items += [" + ", _repo_ref(config, docname, sidecar, sidecar.name)]
                items.append(f" ({size:.1f} MB)")
            field("Checkpoints", *items)
        box += fields

        rows = [
            _result_cells(config, docname, row, with_project=False)
            for row in project_rows(project.slug, meta)
        ]
        if rows:
            box += _table(RESULT_HEADERS, rows, ["course-results"])
        return [box]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_root", "", "env", types=frozenset({str}))
    app.add_config_value("course_repo_url", "", "env", types=frozenset({str}))
    app.add_config_value("course_repo_ref", "main", "env", types=frozenset({str}))
    app.add_config_value("course_outdir", "", "env", types=frozenset({str}))
    app.add_config_value("course_projects", [], "env", types=frozenset({list}))
    app.add_config_value("course_notebooks", {}, "env", types=frozenset({dict}))
    app.add_config_value("course_folder_pages", {}, "env", types=frozenset({dict}))
    app.add_directive("course-projects", ProjectsDirective)
    app.add_directive("course-results", ResultsDirective)
    app.add_directive("course-topic", TopicDirective)
    app.add_directive("course-project", ProjectDirective)
    app.connect("source-read", add_project_header)
    # before Sphinx's own collectors (priority 500) copy linked files as downloads
    app.connect("doctree-read", rewrite_repo_links, priority=400)
    app.add_css_file("course.css")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
