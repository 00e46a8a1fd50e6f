"""The course site in a real browser: headless Chromium renders every card and decodes its image.

Origin: written for dgm-course (MIT licence).

Skipped, with the reason shown, where no Chromium is installed (CI installs Debian's chromium).
The page's own script sets ``data-images-loaded`` and ``data-card-count`` on <body> at the load
event; ``--dump-dom`` prints the DOM after it ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]


def test_site_renders_cards_and_images(repo, course, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    rc, out = course("site", "--root", repo)
    assert rc == 0, out
    index = repo / "build" / "site" / "index.html"
    url = index.resolve().as_uri()

    result = subprocess.run(
        [browser, *_flags(tmp_path), "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    assert 'data-images-loaded="true"' in body.group(0), body.group(0)
    assert 'data-card-count="2"' in body.group(0), body.group(0)
    assert len(re.findall(r'<div class="card"', dom)) == 2
    assert len(re.findall(r"<img ", dom)) == 2

    shot = tmp_path / "site.png"
    result = subprocess.run(
        [browser, *_flags(tmp_path), "--window-size=1000,700", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_image_is_detected(repo, course, tmp_path):
    """The load marker really checks decoding: a corrupt PNG gives data-images-loaded=false."""
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    course("site", "--root", repo)
    index = repo / "build" / "site" / "index.html"
    html = index.read_text()
    html = re.sub(
        r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,AAAA"', html, count=1
    )
    index.write_text(html)
    result = subprocess.run(
        [browser, *_flags(tmp_path), "--dump-dom", index.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 'data-images-loaded="false"' in result.stdout
