"""`course catalog`: every project's results as a Markdown table, read from project.toml only.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

from course.catalog import HEADER, result_rows


def test_one_row_per_result_in_course_order(repo, course):
    rc, out = course("catalog", "--root", repo)
    assert rc == 0, out
    lines = out.strip().splitlines()
    assert lines[:2] == HEADER.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| Beta model ([projects/beta](projects/beta/)) |")  # week 3
    assert "| not measured yet | 86.76 |" in lines[2]
    alpha = lines[3]
    for cell in (
        "| Alpha model, main setting |",
        "| test NLL, nats (lower is better) |",
        "| 90.12 | 86.76 |",
        "| dynamically binarized MNIST, full test set | exact | 5 CPU-minutes |",
        "| `python -m alpha.evaluate checkpoints/alpha.safetensors` |",
    ):
        assert cell in alpha, cell


def test_the_readme_is_never_written(repo, course):
    before = (repo / "README.md").read_bytes()
    toml = repo / "projects" / "alpha" / "project.toml"
    toml.write_text(toml.read_text().replace("ours = 90.12", "ours = 88.5"))
    rc, out = course("catalog", "--root", repo)
    assert rc == 0 and "| 88.5 | 86.76 |" in out
    assert (repo / "README.md").read_bytes() == before


def test_pipes_and_newlines_stay_inside_their_cells(repo, course):
    toml = repo / "projects" / "beta" / "project.toml"
    text = toml.read_text().replace('title = "Beta model"', 'title = "Beta | model"')
    toml.write_text(text.replace('estimator = "exact"', 'estimator = """exact\nover | k"""'))
    rc, out = course("catalog", "--root", repo)
    assert rc == 0, out
    beta = out.strip().splitlines()[2]
    assert "Beta \\| model" in beta and "| exact over \\| k |" in beta


def test_rows_as_data(repo):
    rows = result_rows(repo)
    assert [(r.slug, r.ours, r.paper) for r in rows] == [
        ("beta", None, 86.76),
        ("alpha", 90.12, 86.76),
    ]
    assert rows[1].ours_text == "90.12" and rows[0].ours_text == "not measured yet"


def test_no_projects(tmp_path, course):
    (tmp_path / "projects").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    rc, out = course("catalog", "--root", tmp_path)
    assert rc == 0 and out.strip() == "_No results yet._"
