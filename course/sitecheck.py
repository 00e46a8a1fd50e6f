"""Every link of the built course site resolves: pages, images, scripts, anchors, repository files.

Origin: written for dgm-course (MIT licence). HTML is read with the standard library's parser.

Sphinx already fails on a broken cross-reference while it builds; this check reads the HTML it
wrote, so it also covers what the theme, MyST-NB's notebook outputs and the generated pages put
there. A relative link must name an existing file or folder (a link that leaves the site is a link
to the working tree and must stay inside the repository); a ``#fragment`` must be an id of the
page it points to; a link to the repository's web address (``--repo-url``) must name a path that
exists in the repository. Links to other sites are not fetched.
"""

from __future__ import annotations

from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRS = {
    "a": "href",
    "link": "href",
    "img": "src",
    "script": "src",
    "source": "src",
    "iframe": "src",
}
OTHER_SCHEMES = ("mailto:", "data:", "javascript:", "tel:")


class _Page(HTMLParser):
    """The links and the ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if values.get(key):
                self.ids.add(str(values[key]))
        attr = LINK_ATTRS.get(tag)
        if attr and values.get(attr):
            self.links.append(str(values[attr]))


@cache
def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def _check_target(path: Path, fragment: str, root: Path) -> str | None:
    """What is wrong with a link to ``path#fragment`` (None if nothing)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        return "points outside the repository"
    if not resolved.exists():
        return "no such file"
    if fragment and resolved.suffix == ".html" and unquote(fragment) not in _read(resolved).ids:
        return f"no id {fragment!r} in {resolved.name}"
    return None


def check_links(site: Path, root: Path, repo_url: str = "", ref: str = "main") -> list[str]:
    """One line per broken link of the site in ``site`` (``page: link: what is wrong``)."""
    _read.cache_clear()
    site, root = site.resolve(), root.resolve()
    repo_prefixes = (
        tuple(f"{repo_url.rstrip('/')}/{kind}/{ref}/" for kind in ("blob", "tree"))
        if repo_url
        else ()
    )
    problems = []
    for page_path in sorted(site.rglob("*.html")):
        if "_static" in page_path.relative_to(site).parts:  # theme templates, not pages
            continue
        page = _read(page_path)
        where = page_path.relative_to(site).as_posix()
        for link in page.links:
            if link == "#" or link.startswith(OTHER_SCHEMES):
                continue
            if repo_prefixes and link.startswith(repo_prefixes):
                rest = link.split(f"/{ref}/", 1)[1]
                path = root / unquote(urlsplit(rest).path)
                problem = None if path.exists() else "no such file in the repository"
            elif urlsplit(link).scheme or link.startswith("//"):
                continue  # another site: not fetched
            else:
                parts = urlsplit(link)
                path = page_path if not parts.path else page_path.parent / unquote(parts.path)
                problem = _check_target(path, parts.fragment, root)
            if problem:
                problems.append(f"{where}: {link}: {problem}")
    return problems
