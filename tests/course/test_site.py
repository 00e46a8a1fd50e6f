"""`course site`: the Sphinx site built from the committed files, its pages, links and MathJax.

Origin: written for dgm-course (MIT licence).

The browser's view of the same pages (math typeset, images decoded, no network) is in
test_site_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from course import site as site_module
from course.projects import CourseError
from course.sitecheck import check_links

REPO_ROOT = Path(__file__).resolve().parents[2]


def _build(repo: Path, course, *args: str) -> Path:
    rc, out = course("site", "--root", repo, *args)
    assert rc == 0, out
    return repo / "build" / "site"


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _article(page: Path) -> str:
    """The page's own content, without the navigation around it."""
    return _text(page).split('<article class="bd-article"', 1)[1].split("</article>", 1)[0]


def _plain(html: str) -> str:
    """The words of some HTML, tags dropped (docutils wraps each word of inline code)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_pages_of_the_site(repo, course):
    site = _build(repo, course)
    for page in (
        "index.html",
        "results.html",
        "projects/alpha/README.html",
        "projects/alpha/alpha.html",
        "projects/beta/README.html",
        "projects/beta/beta.html",
        *(f"topics/{t}.html" for t in ("autoregressive", "latent-variable", "flows", "gans")),
    ):
        assert (site / page).is_file(), page
    index = _text(site / "index.html")
    # one card per project, in course order (beta is week 3, alpha week 4), with its image
    cards = re.findall(r'<div class="course-card[^"]*">(.*?)</div>', index, re.S)
    assert [re.search(r"projects/(\w+)/README.html", c).group(1) for c in cards] == [
        "beta",
        "alpha",
    ]
    assert all(re.search(r'<img [^>]*src="_images/', c) for c in cards)
    assert "test NLL: ours 90.12 vs paper 86.76 nats" in index
    assert "not measured yet" in index  # beta has no `ours`


def test_project_page_has_readme_notebook_and_files(repo, course):
    site = _build(repo, course)
    page = _text(site / "projects" / "alpha" / "README.html")
    assert "A fixture project." in page  # the README itself
    assert 'href="https://arxiv.org/abs/1312.6114"' in page  # the paper
    assert 'href="alpha.html"' in page  # its notebook, rendered as a child page
    assert 'href="../../topics/latent-variable.html"' in page
    # source folder, review and checkpoint files: links into the repository (here the working
    # tree, which a local build opens from disk); the README's own links to them too
    links = set(re.findall(r'href="(\.\./\.\./\.\./\.\./projects/alpha/[^"]*)"', page))
    assert {
        "../../../../projects/alpha/",
        "../../../../projects/alpha/REVIEW.md",
        "../../../../projects/alpha/checkpoints/alpha.safetensors",
        "../../../../projects/alpha/checkpoints/alpha.json",
    } <= links
    for link in links:
        assert (site / "projects" / "alpha" / link).resolve().exists(), link
    assert not list(site.rglob("*.safetensors"))  # weights are linked, never copied
    # the results row with its command
    assert "python -m alpha.evaluate checkpoints/alpha.safetensors" in _plain(page)
    assert "Burda et al., ICLR 2016, Table 1" in page
    notebook = _text(site / "projects" / "alpha" / "alpha.html")
    assert "test NLL: 206.0 nats" in notebook  # the committed outputs, not re-executed
    assert re.search(r'<img [^>]*src="\.\./\.\./_images/', notebook)


def test_markdown_files_that_are_not_pages_are_linked_in_the_repository(repo, course):
    project = repo / "projects" / "alpha"
    (project / "notes.md").write_text("# Notes\n\nA derivation.\n")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\nThe derivation is in [notes](notes.md).\n")
    site = _build(repo, course)
    page = _text(site / "projects" / "alpha" / "README.html")
    assert 'href="../../../../projects/alpha/notes.md"' in page
    assert not (site / "projects" / "alpha" / "notes.html").exists()


def test_links_to_a_repository_address(repo, course):
    site = _build(repo, course, "--repo-url", "https://github.com/dgm/course", "--ref", "abc123")
    page = _text(site / "projects" / "alpha" / "README.html")
    base = "https://github.com/dgm/course"
    assert f'href="{base}/tree/abc123/projects/alpha"' in page
    assert f'href="{base}/blob/abc123/projects/alpha/checkpoints/alpha.safetensors"' in page
    assert "../../../../projects" not in page
    rc, out = course("site", "--root", repo, "--repo-url", "github.com/dgm/course")
    assert rc == 1 and "give the repository's https:// address" in out


def test_repository_address_from_github_actions(repo, course, monkeypatch):
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "dgm/course")
    monkeypatch.setenv("GITHUB_SHA", "f00d")
    site = _build(repo, course)
    page = _text(site / "projects" / "beta" / "README.html")
    assert 'href="https://github.com/dgm/course/tree/f00d/projects/beta"' in page


def test_results_table_from_project_toml(repo, course):
    toml = repo / "projects" / "alpha" / "project.toml"
    toml.write_text(toml.read_text().replace("ours = 90.12", "ours = 88.5"))
    site = _build(repo, course)
    results = _text(site / "results.html")
    table = results.split('class="course-results', 1)[1]
    for header in ("project", "ours", "paper", "dataset", "estimator", "budget", "command"):
        assert f'<th class="head"><p>{header}' in table, header
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    assert len(rows) == 2  # beta's row (not measured) then alpha's
    assert "Beta model" in rows[0] and "not measured yet" in rows[0]
    assert "Alpha model" in rows[1] and ">88.5<" in rows[1] and "86.76" in rows[1]
    assert "dynamically binarized MNIST, full test set" in rows[1]
    assert "5 CPU-minutes" in rows[1] and "python -m alpha.evaluate" in _plain(rows[1])


def test_metadata_text_is_escaped(repo, course):
    toml = repo / "projects" / "beta" / "project.toml"
    toml.write_text(
        toml.read_text().replace('title = "Beta model"', 'title = "<script>alert(1)</script>"')
    )
    site = _build(repo, course)
    for page in ("index.html", "results.html", "topics/autoregressive.html"):
        text = _text(site / page)
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_topic_pages_list_projects_and_summary(repo, course):
    summary = repo / "topics" / "flows" / "README.md"
    summary.parent.mkdir(parents=True)
    summary.write_text(
        "# Normalizing flows: a summary\n\nChange of variables: "
        "$\\log p(x) = \\log p(z) + \\log |\\det J|$.\n"
    )
    site = _build(repo, course)
    latent = _article(site / "topics" / "latent-variable.html")
    assert 'href="../projects/alpha/README.html"' in latent
    assert "projects/beta/README.html" not in latent
    assert "Not written yet" in latent  # no summary for this topic
    flows = _article(site / "topics" / "flows.html")
    assert "No project on this topic yet." in flows
    assert 'href="flows/README.html"' in flows
    assert "Change of variables" in _text(site / "topics" / "flows" / "README.html")


def test_guides_are_pages(repo, course):
    (repo / "CONTRIBUTING.md").write_text(
        "# Contributing\n\nRead [the reviewer guide](reviews/README.md); copy [beta](projects/beta/).\n"
    )
    (repo / "reviews" / "README.md").write_text(
        "# Reviewer guide\n\nAssignments: [assignments.toml](assignments.toml).\n"
    )
    site = _build(repo, course)
    contributing = _text(site / "CONTRIBUTING.html")
    assert 'href="reviews/README.html"' in contributing
    assert 'href="projects/beta/README.html"' in contributing  # a project folder: its page
    reviewer = _text(site / "reviews" / "README.html")
    assert 'href="../../../reviews/assignments.toml"' in reviewer  # not a page: the file
    index = _text(site / "index.html")
    assert 'href="CONTRIBUTING.html"' in index and 'href="reviews/README.html"' in index


def test_executed_notebooks_on_request(repo, course):
    nb = json.loads((repo / "projects" / "alpha" / "alpha.ipynb").read_text())
    for cell in nb["cells"]:
        if "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["RAN-AGAIN\n"]}]
    executed = repo / "build" / "notebooks" / "alpha.ipynb"
    executed.parent.mkdir(parents=True)
    executed.write_text(json.dumps(nb))
    site = _build(repo, course)
    assert "RAN-AGAIN" not in _text(site / "projects" / "alpha" / "alpha.html")
    site = _build(repo, course, "--executed")
    assert "RAN-AGAIN" in _text(site / "projects" / "alpha" / "alpha.html")


def test_a_broken_link_fails_the_build_naming_the_file(repo, course):
    readme = repo / "projects" / "beta" / "README.md"
    readme.write_text(readme.read_text() + "\nSee [the derivation](derivation.md).\n")
    rc, out = course("site", "--root", repo)
    assert rc == 1
    assert re.search(r"projects/beta/README.md:\d+: WARNING: .*derivation\.md", out), out
    assert out.strip().splitlines()[-1].startswith("course site: error: the site did not build")


def test_a_project_without_readme_is_left_out_with_one_line(repo, course):
    (repo / "projects" / "beta" / "README.md").unlink()
    rc, out = course("site", "--root", repo)
    assert rc == 0, out
    assert "projects/beta: left out of the site: no README.md" in out
    assert not (repo / "build" / "site" / "projects" / "beta").exists()


def test_link_check_of_the_built_site(repo, course):
    site = _build(repo, course)
    assert check_links(site, repo) == []
    page = site / "projects" / "alpha" / "README.html"
    text = _text(page)
    text = text.replace('href="alpha.html"', 'href="gone.html"', 1)
    text = text.replace('href="../../results.html"', 'href="../../results.html#no-such-id"', 1)
    text += '<a href="../../../../../etc/passwd">x</a><img src="../../_images/none.png">'
    page.write_text(text)
    problems = check_links(site, repo)
    assert any("gone.html: no such file" in p for p in problems), problems
    assert any("no id 'no-such-id' in results.html" in p for p in problems), problems
    assert any("points outside the repository" in p for p in problems), problems
    assert any("_images/none.png: no such file" in p for p in problems), problems
    assert all(p.startswith("projects/alpha/README.html: ") for p in problems)


def test_math_comes_from_the_site_not_a_cdn(repo, course):
    site = _build(repo, course)
    assert (site / "_static" / "mathjax" / "tex-chtml-full.js").is_file()
    assert (site / "_static" / "mathjax" / "LICENSE").is_file()
    notebook = _text(site / "projects" / "alpha" / "alpha.html")
    assert 'src="../../_static/mathjax/tex-chtml-full.js' in notebook
    for page in site.rglob("*.html"):
        text = _text(page)
        assert not re.search(r'<script[^>]+src="(https?:)?//', text), page
        assert not re.search(r'<link[^>]+href="(https?:)?//', text), page


def test_mathjax_checksum_is_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "dgm-course"
    cache.mkdir()
    bad = cache / f"mathjax-{site_module.MATHJAX_VERSION}.tgz"
    bad.write_bytes(b"not the package")
    with pytest.raises(CourseError, match="expected " + site_module.MATHJAX_SHA256):
        site_module.mathjax()
    assert not bad.exists()  # a corrupt download is never used, and fetched anew next time


def test_mathjax_without_npm_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(site_module.shutil, "which", lambda name: None)
    with pytest.raises(CourseError, match=r"npm is needed once .*apt-get install npm"):
        site_module.mathjax()


def test_the_course_site_builds_in_under_two_minutes(tmp_path, course):
    """`make site` on the repository's own projects, notebooks and guides (a copy of them)."""
    copy = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "data", "runs", "build", "*.egg-info", ".*_cache", "__pycache__"
        ),
    )
    start = time.perf_counter()
    rc, out = course("site", "--root", copy)
    seconds = time.perf_counter() - start
    assert rc == 0, out
    assert seconds < 120, seconds
    site = copy / "build" / "site"
    for guide in ("CONTRIBUTING", "CONVENTIONS", "reviews/README", "reviews/topic_summaries"):
        assert (site / f"{guide}.html").is_file(), guide
    for project in (REPO_ROOT / "projects").iterdir():
        if (project / "project.toml").is_file() and (project / "README.md").is_file():
            assert (site / "projects" / project.name / "README.html").is_file(), project.name
