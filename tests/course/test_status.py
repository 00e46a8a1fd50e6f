"""`course status` joins project.toml, assignments, REVIEW.md and run times into one row each.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import json


def test_status_table(repo, course):
    rc, out = course("status", "--root", repo)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["slug", "topic/week", "paper"]
    alpha = next(line for line in lines if line.startswith("alpha "))
    for part in (
        "latent-variable/4",
        "Kingma & Welling 2014",
        "v2",
        "Ada Lovelace",
        "Grace Hopper",
        "submitted (minor revision)",
        "0/1/1",
        "12 s",
        "90.12 / 86.76 nats",
    ):
        assert part in alpha, (part, alpha)
    beta = next(line for line in lines if line.startswith("beta "))
    assert "pending" in beta and "Alan Turing" in beta and "? / 86.76 nats" in beta


def test_status_json(repo, course):
    rc, out = course("status", "--format", "json", "--root", repo)
    assert rc == 0
    rows = {r["slug"]: r for r in json.loads(out)}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["findings"] == {"open": 0, "addressed": 1, "declined": 1}
    assert rows["alpha"]["run"]["seconds"] == 12.5
    assert rows["beta"]["run"] is None
    assert rows["beta"]["reviewers"] == ["Alan Turing"]
    assert rows["alpha"]["headline"] == "90.12 / 86.76 nats"


def test_status_counts_open_findings_and_survives_bad_toml(repo, course):
    review = repo / "projects" / "alpha" / "REVIEW.md"
    review.write_text(review.read_text().replace("addressed in #12", ""))
    (repo / "projects" / "beta" / "project.toml").write_text("not = [valid")
    rc, out = course("status", "--format", "json", "--root", repo)
    rows = {r["slug"]: r for r in json.loads(out)}
    assert rows["alpha"]["findings"]["open"] == 1
    assert rows["beta"]["error"]
    rc, out = course("status", "--root", repo)
    assert rc == 0 and "beta (!)" in out


def test_status_without_projects(tmp_path, course):
    (tmp_path / "projects").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    rc, out = course("status", "--root", tmp_path)
    assert rc == 0 and "no projects" in out


def test_malformed_fields_do_not_crash_the_reports(repo, course):
    toml = repo / "projects" / "beta" / "project.toml"
    text = toml.read_text().replace("week = 3", 'week = "three"')
    text = text.replace('developers = ["Ada Lovelace"]', 'developers = "Ada Lovelace"')
    toml.write_text(text.replace("[[papers]]", "[[papers_typo]]"))
    for args in (("status",), ("status", "--format", "json"), ("site",), ("catalog",)):
        rc, out = course(*args, "--root", repo)
        assert rc == 0, (args, out)
    rc, out = course("check", "beta", "--root", repo)
    assert rc == 1 and "week: 'three' is not of type 'integer'" in out


def test_author_names_keep_their_particles():
    from course.projects import authors_short, surname

    assert surname("Aaron van den Oord") == "van den Oord"
    assert surname("Diederik P. Kingma") == "Kingma"
    assert surname("Van") == "Van"
    assert authors_short(["Diederik P. Kingma", "Max Welling"]) == "Kingma & Welling"
    assert (
        authors_short(["Aaron van den Oord", "Nal Kalchbrenner", "K. K."]) == "van den Oord et al."
    )
    assert authors_short([]) == "?"
