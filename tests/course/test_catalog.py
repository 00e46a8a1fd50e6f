"""`course catalog`: the README table between the markers, regenerated from project.toml.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

from course.catalog import END, START


def test_catalog_is_up_to_date_in_the_fixture(repo, course):
    rc, out = course("catalog", "--check", "--root", repo)
    assert rc == 0, out
    rc, out = course("catalog", "--root", repo)
    assert rc == 0
    assert out.startswith("| project | paper |")
    assert "| 90.12 | 86.76 | [projects/alpha](projects/alpha/) |" in out


def test_write_updates_only_the_block(repo, course):
    toml = repo / "projects" / "alpha" / "project.toml"
    toml.write_text(toml.read_text().replace("ours = 90.12", "ours = 88.5"))
    rc, out = course("catalog", "--check", "--root", repo)
    assert rc == 1 and "out of date -> run `course catalog --write`" in out
    before = (repo / "README.md").read_text()
    rc, out = course("catalog", "--write", "--root", repo)
    assert rc == 0 and "catalog updated" in out
    after = (repo / "README.md").read_text()
    assert "| 88.5 | 86.76 |" in after
    assert before.split(START)[0] == after.split(START)[0]
    assert before.split(END)[1] == after.split(END)[1]
    assert course("catalog", "--check", "--root", repo)[0] == 0
    assert course("check", "--root", repo)[0] == 0


def test_pipes_in_titles_are_escaped(repo, course):
    toml = repo / "projects" / "beta" / "project.toml"
    toml.write_text(toml.read_text().replace('title = "Beta model"', 'title = "Beta | model"'))
    rc, out = course("catalog", "--root", repo)
    assert "Beta \\| model" in out


def test_write_without_readme_or_markers_fails(repo, course):
    readme = repo / "README.md"
    readme.write_text("# No markers here\n")
    rc, out = course("catalog", "--write", "--root", repo)
    assert rc == 1 and "has no <!-- catalog:start -->" in out
    assert readme.read_text() == "# No markers here\n"
    assert course("check", "--root", repo)[0] == 0  # no markers: check skips the catalog
    readme.unlink()
    rc, out = course("catalog", "--write", "--root", repo)
    assert rc == 1 and "README.md does not exist" in out
    assert not readme.exists()


def test_write_is_atomic_a_failure_mid_write_leaves_the_old_readme(repo, course, monkeypatch):
    import course.catalog as catalog
    from shared_utils import fileio

    toml = repo / "projects" / "alpha" / "project.toml"
    toml.write_text(toml.read_text().replace("ours = 90.12", "ours = 88.5"))
    before = (repo / "README.md").read_bytes()

    def killed(tmp, final):  # the process dies after writing the new text, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "publish", killed)
    monkeypatch.setattr(catalog, "atomic_write_bytes", fileio.atomic_write_bytes)
    rc, out = course("catalog", "--write", "--root", repo)
    assert rc == 130 and (repo / "README.md").read_bytes() == before
    assert not list(repo.glob(".README.md.*.tmp"))  # the temporary file is cleaned up
