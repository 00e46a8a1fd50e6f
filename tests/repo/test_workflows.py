"""The GitHub workflows are valid (published schema) and follow the course's CI policy."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_policy import ROOT, WORKFLOWS, check_workflow, hook_ids, load_yaml, triggers

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
EXPECTED = {"lint.yml", "tests.yml", "notebooks.yml", "site.yml", "install.yml"}
# Steps that pay for a full set-up of the environment (about 90 s on a GitHub runner).
SETUP = re.compile(r"\bmake (setup|lint|unit|notebooks|test|site)\b|\bpip install\b")


def check_jsonschema() -> str:
    exe = Path(sys.executable).parent / "check-jsonschema"
    return str(exe) if exe.exists() else (shutil.which("check-jsonschema") or "")


def test_expected_workflows_exist():
    assert EXPECTED <= {p.name for p in WORKFLOW_FILES}


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_workflows_match_published_schema(schema):
    exe = check_jsonschema()
    if not exe:
        pytest.skip("check-jsonschema is not installed (make setup installs it)")
    result = subprocess.run(
        [exe, "--builtin-schema", schema, *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_policy(path):
    assert check_workflow(load_yaml(path), path.name) == []


def test_only_site_deploy_has_write_permissions():
    for path in WORKFLOW_FILES:
        for job_id, job in load_yaml(path)["jobs"].items():
            permissions = job.get("permissions") or {}
            writes = sorted(k for k, v in permissions.items() if v == "write")
            if (path.name, job_id) == ("site.yml", "deploy"):
                assert writes == ["id-token", "pages"]
            else:
                assert writes == [], f"{path.name}:{job_id} asks for {writes}"


def test_notebooks_workflow_triggers_and_jobs():
    workflow = load_yaml(WORKFLOWS / "notebooks.yml")
    on = triggers(workflow)
    assert {"pull_request", "push", "schedule"} <= set(on)
    assert on["push"]["branches"] == ["main"]
    assert on["schedule"] and all(len(s["cron"].split()) == 5 for s in on["schedule"])
    # One job: select the projects, set up once, run every selected notebook in one pytest run.
    assert list(workflow["jobs"]) == ["notebooks"]
    (job,) = workflow["jobs"].values()
    assert "strategy" not in job and "needs" not in job
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    select = next(s for s in steps if s.get("id") == "select")
    assert "changed_projects.py --base" in select["run"]
    assert "changed_projects.py --all" in select["run"]
    later = steps[steps.index(select) + 1 :]
    # nothing to run (a pull request that touches no project): no set-up is paid for
    assert later and all(s.get("if") == "steps.select.outputs.count != '0'" for s in later)
    assert sum(bool(SETUP.search(s.get("run", ""))) for s in steps) == 1
    run = next(s for s in steps if "nbval" in s.get("run", ""))
    assert run["env"]["DGM_SMOKE"] == "1"
    assert run["env"]["NOTEBOOKS"] == "${{ steps.select.outputs.notebooks }}"
    assert "--nbval-lax" in run["run"] and "--nbval-current-env" in run["run"]
    assert "$NOTEBOOKS" in run["run"]


def test_course_check_runs_in_the_lint_hook_not_in_a_job_of_its_own():
    """`course check` of every project is a pre-commit hook, which the lint job runs: a job
    that set up a whole environment to run it again (0.2 s of work) is not needed."""
    hooks = hook_ids(load_yaml(ROOT / ".pre-commit-config.yaml"))
    check = hooks["course-check"]
    assert check["entry"].endswith("course check") and check["pass_filenames"] is False
    assert re.match(check["files"], "projects/newproj/REVIEW.md")
    lint = load_yaml(WORKFLOWS / "lint.yml")["jobs"]["pre-commit"]["steps"]
    assert any(s.get("run") == "make lint" for s in lint)
    for path in WORKFLOW_FILES:
        if path.name == "install.yml":  # the path without make runs it in its fresh venv
            continue
        for job_id, job in load_yaml(path)["jobs"].items():
            runs = "\n".join(s.get("run", "") for s in job.get("steps") or [])
            assert "course check" not in runs, f"{path.name}:{job_id}"


def test_each_workflow_sets_up_once():
    """A pull request pays one set-up per workflow, whatever the number of projects."""
    for path in WORKFLOW_FILES:
        jobs = load_yaml(path)["jobs"]
        setups = [
            job_id
            for job_id, job in jobs.items()
            if any(SETUP.search(s.get("run", "")) for s in job.get("steps") or [])
        ]
        assert len(setups) <= 1, f"{path.name}: {setups}"
        for job_id in setups:
            assert "matrix" not in (jobs[job_id].get("strategy") or {}), f"{path.name}:{job_id}"


def test_the_path_without_make_is_tested_in_a_fresh_venv():
    workflow = load_yaml(WORKFLOWS / "install.yml")
    on = triggers(workflow)
    for path in ("pyproject.toml", "requirements*.txt", "shared_utils/**", "course/**"):
        assert path in on["pull_request"]["paths"], path
    assert on["push"]["branches"] == ["main"] and on["schedule"]
    (job,) = workflow["jobs"].values()
    runs = [s.get("run", "") for s in job["steps"]]
    script = "\n".join(runs)
    assert "make " not in script
    order = [
        "python -m venv .venv",
        'pip install -e ".[dev]"',
        "python -m shared_utils.data prepare",
        ".venv/bin/course check",
        "tests/repo/test_dependencies.py",
    ]
    positions = [script.index(command) for command in order]
    assert positions == sorted(positions)
    assert workflow["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_site_workflow_checks_pull_requests_and_deploys_from_main_only():
    workflow = load_yaml(WORKFLOWS / "site.yml")
    on = triggers(workflow)
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    assert on["schedule"]  # the review index on the site compares due dates with the day
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    # built from the committed notebooks, not by running them (`make demo` is for people)
    assert any(s.get("run") == "make site" for s in build["steps"])
    assert not any("make demo" in s.get("run", "") for s in build["steps"])
    upload = next(
        s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@")
    )
    main_only = "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
    assert upload["if"] == main_only and deploy["if"] == main_only
    assert "permissions" not in build  # contents: read, from the top level
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build"
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])


def test_lint_and_tests_workflows_run_the_make_targets():
    lint = load_yaml(WORKFLOWS / "lint.yml")["jobs"]["pre-commit"]["steps"]
    unit = load_yaml(WORKFLOWS / "tests.yml")["jobs"]["unit"]["steps"]
    assert any(s.get("run") == "make lint" for s in lint)
    assert any(s.get("run") == "make unit" for s in unit)


# --- the checker itself must catch violations ------------------------------------------------

GOOD = {
    "name": "ok",
    "on": {"pull_request": None},
    "permissions": {"contents": "read"},
    "concurrency": {"group": "g-${{ github.ref }}", "cancel-in-progress": True},
    "jobs": {
        "a": {
            "runs-on": "ubuntu-24.04",
            "timeout-minutes": 10,
            "steps": [
                {"uses": "actions/checkout@v5"},
                {
                    "uses": "actions/setup-python@v6",
                    "with": {
                        "python-version": "3.11",
                        "cache": "pip",
                        "cache-dependency-path": "requirements*.txt",
                    },
                },
                {"run": "make test"},
            ],
        }
    },
}


def mutate(change) -> dict:
    workflow = copy.deepcopy(GOOD)
    change(workflow)
    return workflow


def test_checker_accepts_the_good_example():
    assert check_workflow(GOOD) == []
    # PyYAML reads a bare `on:` key as True
    assert check_workflow({True if k == "on" else k: v for k, v in GOOD.items()}) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda w: w.update({True: {"pull_request_target": None}}) or w.pop("on"),
            "pull_request_target",
        ),
        (lambda w: w["on"].update({"pull_request_target": None}), "pull_request_target"),
        (lambda w: w.update(permissions="write-all"), "top-level permissions"),
        (lambda w: w.update(permissions={"contents": "write"}), "top-level permissions"),
        (lambda w: w.pop("permissions"), "top-level permissions"),
        (lambda w: w["jobs"]["a"].pop("timeout-minutes"), "timeout-minutes"),
        (lambda w: w["jobs"]["a"].update({"permissions": "write-all"}), "grant single scopes"),
        (
            lambda w: w["jobs"]["a"].update({"permissions": {"contents": "write"}}),
            "contents: write",
        ),
        (lambda w: w.pop("concurrency"), "concurrency group"),
        (lambda w: w["concurrency"].update({"cancel-in-progress": False}), "cancel-in-progress"),
        (lambda w: w["jobs"]["a"]["steps"][1]["with"].pop("cache"), "cache: pip"),
        (
            lambda w: w["jobs"]["a"]["steps"][1]["with"].pop("cache-dependency-path"),
            "cache-dependency-path",
        ),
        (lambda w: w["jobs"]["a"]["steps"][1]["with"].update({"python-version": "3.12"}), "3.11"),
        (lambda w: w["jobs"]["a"]["steps"][0].update(uses="actions/checkout@main"), "pinned"),
        (lambda w: w["jobs"]["a"]["steps"][0].update(uses="actions/checkout"), "pinned"),
        (
            lambda w: w["jobs"]["a"]["steps"][2].update(
                run='echo "${{ github.event.pull_request.title }}"'
            ),
            "untrusted",
        ),
        (lambda w: w.update(jobs={}), "no jobs"),
    ],
)
def test_checker_reports_violations(change, expected):
    problems = check_workflow(mutate(change))
    assert any(expected in p for p in problems), problems


def test_checker_fails_on_a_bad_workflow_file(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: [pull_request_target]\n"
        "permissions: write-all\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/setup-python@v6\n"
        "        with: {python-version: '3.11'}\n"
    )
    problems = check_workflow(load_yaml(bad), "bad.yml")
    for expected in ("pull_request_target", "permissions", "timeout-minutes", "cache: pip"):
        assert any(expected in p for p in problems), (expected, problems)
    exe = check_jsonschema()
    if exe:  # the published timeout schema rejects it too
        result = subprocess.run(
            [exe, "--builtin-schema", "custom.github-workflows-require-timeout", str(bad)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0


def test_changed_projects_script_is_used_from_the_repo_root():
    assert (ROOT / ".github" / "scripts" / "changed_projects.py").is_file()


def test_make_targets_used_by_workflows_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    for path in WORKFLOW_FILES:
        for job in load_yaml(path)["jobs"].values():
            for step in job.get("steps") or []:
                for target in re.findall(r"\bmake ([a-z][\w-]*)", step.get("run", "")):
                    assert target in targets, f"{path.name}: make {target}"
