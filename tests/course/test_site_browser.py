"""The course site in a real browser, offline: math typeset by MathJax, images decoded.

Origin: written for dgm-course (MIT licence).

Skipped, with the reason shown, where no Chromium is installed (.ci/run installs Debian's
chromium). Each page is opened from disk with every host name unresolvable, so nothing can come
from a CDN. A probe script, added to a copy of the page next to it (same relative links), waits
for MathJax's first typesetting and writes what it found on <body>; ``--dump-dom`` prints the DOM
after it ran.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PROBE = r"""
<script>
window.addEventListener("load", function () {
  function report() {
    var body = document.body;
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var math = Array.prototype.slice.call(document.querySelectorAll(".math"));
    var untypeset = math.filter(function (m) { return !m.querySelector("mjx-container"); });
    var leftovers = [];
    var article = document.querySelector("article") || body;
    var walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      var node = walker.currentNode;
      if (node.parentElement.closest("pre, code, script, style, mjx-container, .highlight")) continue;
      if (/\$|\\\(|\\\[/.test(node.nodeValue)) leftovers.push(node.nodeValue.slice(0, 80));
    }
    body.setAttribute("data-images", String(images.length));
    body.setAttribute("data-broken-images", JSON.stringify(broken.map(function (i) { return i.src; })));
    body.setAttribute("data-math", String(math.length));
    body.setAttribute("data-mjx", String(document.querySelectorAll("mjx-container").length));
    body.setAttribute("data-untypeset", String(untypeset.length));
    body.setAttribute("data-tex-left", JSON.stringify(leftovers));
    body.setAttribute("data-probe", "done");
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(report, report);
  } else {
    report();
  }
});
</script>
"""


def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit and shutil.which(explicit):
        return shutil.which(explicit)
    return next((shutil.which(name) for name in CANDIDATES if shutil.which(name)), None)


def _flags(tmp_path: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no CDN can answer
        "--virtual-time-budget=15000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]


@pytest.fixture
def browser() -> str:
    found = _chromium()
    if found is None:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    return found


def probe(browser: str, page: Path, tmp_path: Path) -> dict[str, str]:
    """Open ``page`` with the probe; the attributes it set on <body>."""
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [browser, *_flags(tmp_path), "--dump-dom", copy.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout)
    assert body, result.stdout[:500]
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("data-probe") == "done", body.group(0)
    return {k: html.unescape(v) for k, v in attrs.items()}


def _site(repo: Path, course) -> Path:
    rc, out = course("site", "--root", repo)
    assert rc == 0, out
    return repo / "build" / "site"


def test_notebook_page_math_and_images(repo, course, browser, tmp_path):
    site = _site(repo, course)
    found = probe(browser, site / "projects" / "alpha" / "alpha.html", tmp_path)
    assert int(found["data-math"]) >= 1  # $p(x) = \prod_i p(x_i)$ in the notebook
    assert found["data-untypeset"] == "0", found
    assert int(found["data-mjx"]) >= int(found["data-math"])
    assert json.loads(found["data-tex-left"]) == []  # no raw $...$ left in the text
    assert int(found["data-images"]) >= 1  # the card cell's samples
    assert json.loads(found["data-broken-images"]) == []


def test_project_page_math_and_images(repo, course, browser, tmp_path):
    site = _site(repo, course)
    found = probe(browser, site / "projects" / "alpha" / "README.html", tmp_path)
    # inline $...$ and a $$...$$ inside a paragraph, as Jupyter and GitHub accept it
    assert found["data-math"] == "2" and found["data-untypeset"] == "0", found
    assert json.loads(found["data-tex-left"]) == []
    home = probe(browser, site / "index.html", tmp_path)
    assert home["data-images"] == "2"  # one card image per project
    assert json.loads(home["data-broken-images"]) == []


def test_the_probe_sees_broken_images_and_untypeset_math(repo, course, browser, tmp_path):
    """The checks above can fail: a corrupt image and a page without MathJax are caught."""
    site = _site(repo, course)
    for image in (site / "_images").iterdir():
        image.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    page = site / "projects" / "alpha" / "alpha.html"
    page.write_text(
        re.sub(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*></script>', "", page.read_text())
    )
    found = probe(browser, page, tmp_path)
    assert json.loads(found["data-broken-images"]), found
    assert int(found["data-untypeset"]) >= 1 and found["data-mjx"] == "0", found
