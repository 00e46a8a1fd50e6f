"""`course site`: build/site/index.html, one card per project with its samples and its number.

Origin: written for dgm-course (MIT licence).

The page is self-contained (card images are inlined as data: URIs, no scripts or styles from
elsewhere) so it can be opened from disk, attached to CI runs or published as it is. The card image
is the first PNG output of the notebook cell tagged ``card``: from the executed copy in
build/notebooks/ when `course run` made one, else from the committed notebook.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from course.projects import (
    Project,
    fmt_number,
    headline,
    paper_short,
    people_of,
    read_run_times,
    readable_projects,
    sort_key,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; background: #fafafa; color: #222; }
h1 { margin-bottom: 0.2rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1rem; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1rem; }
.card h2 { font-size: 1.05rem; margin: 0 0 0.4rem 0; }
.card img { width: 100%; max-height: 300px; object-fit: contain; image-rendering: pixelated;
  border: 1px solid #eee; }
.noimg { height: 120px; display: flex; align-items: center; justify-content: center;
  background: #f0f0f0; color: #777; }
.meta { color: #555; font-size: 0.9rem; margin: 0.2rem 0; }
.metric { font-weight: 600; margin: 0.4rem 0; }
"""

# Marks the page once every card image has decoded (used by the headless-browser test).
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img"));
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-loaded", ok ? "true" : "false");
  document.body.setAttribute("data-card-count", String(document.querySelectorAll(".card").length));
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _safe_url(url: Any) -> str | None:
    text = str(url or "")
    return text if text.startswith(("https://", "http://")) else None


def card_image(notebook: Path) -> str | None:
    """Base64 PNG of the first image output of the ``card`` cell, or None."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if "card" not in (cell.get("metadata", {}).get("tags") or []):
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                return "".join(png) if isinstance(png, list) else str(png)
        return None
    return None


def _metric_html(meta: dict[str, Any]) -> str:
    row = headline(meta)
    if row is None:
        return '<p class="metric">no results yet</p>'
    ours = fmt_number(row["ours"]) if "ours" in row else "not measured yet"
    if "floor" in row:
        ours += f" (floor {fmt_number(row['floor'])})"
    better = "lower is better" if row.get("lower_is_better") else "higher is better"
    return (
        f'<p class="metric">{_e(row.get("metric", ""))}: ours {_e(ours)} vs paper '
        f'{_e(fmt_number(row.get("paper")))} {_e(row.get("unit", ""))}</p>'
        f'<p class="meta">{_e(row.get("estimator", ""))}; {_e(better)}</p>'
    )


def render_card(root: Path, project: Project, runs: dict[str, Any]) -> str:
    """One project's card."""
    meta = project.meta or {}
    slug = project.slug
    executed = root / "build" / "notebooks" / f"{slug}.ipynb"
    png = card_image(executed) if executed.is_file() else None
    png = png or card_image(project.notebook)
    image = (
        f'<img src="data:image/png;base64,{_e(png)}" alt="{_e("samples: " + slug)}">'
        if png
        else '<div class="noimg">no card image yet</div>'
    )
    papers = meta.get("papers")
    paper = papers[0] if isinstance(papers, list) and papers and isinstance(papers[0], dict) else {}
    paper_text = _e(f"{paper.get('title', '?')} ({paper_short(meta)})")
    url = _safe_url(paper.get("url"))
    paper_html = f'<a href="{_e(url)}">{paper_text}</a>' if url else paper_text
    title = _e(meta.get("title", slug))
    page = root / "build" / "site" / "notebooks" / f"{slug}.html"
    links = [f"<code>projects/{_e(slug)}/</code>"]
    if page.is_file():
        title = f'<a href="notebooks/{_e(slug)}.html">{title}</a>'
        links.append(f'<a href="notebooks/{_e(slug)}.html">executed notebook</a>')
    run = runs.get(slug) if isinstance(runs.get(slug), dict) else None
    run_text = ""
    if run and isinstance(run.get("seconds"), (int, float)):
        state = "ran" if run.get("ok") else "FAILED"
        smoke = " (smoke)" if run.get("smoke") else ""
        run_text = f'<p class="meta">{_e(state)} in {run["seconds"]:.0f} s{_e(smoke)}</p>'
    people = ", ".join(people_of(meta, "developers"))
    return (
        f'<div class="card" id="{_e(slug)}">\n'
        f"<h2>{title}</h2>\n"
        f'<p class="meta">{paper_html}</p>\n'
        f'<p class="meta">{_e(meta.get("topic", "?"))} · week {_e(meta.get("week", "?"))}'
        f" · {_e(meta.get('version', '?'))} · {_e(people)}</p>\n"
        f"{image}\n{_metric_html(meta)}\n{run_text}"
        f'<p class="meta">{" · ".join(links)}</p>\n</div>'
    )


def render_site(root: Path) -> str:
    """The whole index.html."""
    runs = read_run_times(root)
    projects = readable_projects(root)
    projects.sort(key=lambda p: sort_key(p.meta, p.slug))
    cards = "\n".join(render_card(root, p, runs) for p in projects)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Deep Generative Models: course projects</title>\n"
        f"<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n"
        "<h1>Deep Generative Models: course projects</h1>\n"
        f'<p class="meta">{len(projects)} project(s). Numbers are measured in this repository '
        "with the command in each project's README, next to the paper's.</p>\n"
        f'<div class="cards">\n{cards}\n</div>\n</body>\n</html>\n'
    )


def main(root: Path) -> int:
    """Write build/site/index.html and say where it is."""
    out = root / "build" / "site" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_site(root)
    tmp = out.with_name(".index.html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0
