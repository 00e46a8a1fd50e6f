"""Sphinx settings of the course site (Jupyter Book 1's stack: Sphinx, MyST-NB, sphinx-book-theme).

Origin: written for dgm-course (MIT licence).

`course site` writes a two-part conf.py into its staging folder: ``from course.site_conf import *``
and the values of one build (repository root, the pages to read, where MathJax was unpacked).
Notebooks are rendered from their committed outputs and never executed; math is typeset by a
MathJax copy served from the site itself, so the site needs no network.
"""

from __future__ import annotations

project = "Deep Generative Models"
author = "dgm-course contributors"
copyright = "dgm-course contributors (MIT licence)"

extensions = ["myst_nb", "course.site_ext"]
root_doc = "index"
# The staging folder's conf.py sets include_patterns to exactly the pages of the site.
exclude_patterns = ["**/.ipynb_checkpoints", "**/runs", "**/__pycache__"]

# --- MyST (Markdown) and MyST-NB (notebooks) ---
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # GitHub-style #anchors, as the guides link them
myst_fence_as_directive = ["math"]  # GitHub's ```math blocks
myst_dmath_double_inline = True  # $$...$$ inside a paragraph is display math, as in Jupyter
nb_execution_mode = "off"  # committed outputs as they are
nb_merge_streams = True
nb_output_stderr = "show"
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]

# --- math: MathJax 3 from the site's own _static folder (course.site vendors it) ---
mathjax_path = "mathjax/tex-chtml-full.js"
mathjax3_config = {"tex": {"tags": "ams"}}

# --- HTML ---
html_theme = "sphinx_book_theme"
html_title = "Deep Generative Models"
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
}

# Small additions to the theme: the project cards of the home page.
COURSE_CSS = """
.course-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr));
  gap: 1rem; margin: 1rem 0; }
.course-card { border: 1px solid var(--pst-color-border); border-radius: 8px; padding: 0.8rem; }
.course-card p { margin: 0.2rem 0; }
.course-card img { width: 100%; max-height: 260px; object-fit: contain; image-rendering: pixelated; }
.course-card .course-card-title { font-weight: 600; }
.course-meta { color: var(--pst-color-text-muted); font-size: 0.9rem; }
/* the results tables are wide: their pages take the whole width, their columns get room */
.bd-main .bd-content .bd-article-container:has(table.course-results) { max-width: 100%; }
table.course-results td, table.course-results th { font-size: 0.8rem; vertical-align: top;
  min-width: 6rem; }
table.course-results td:last-child { min-width: 18rem; }
"""
