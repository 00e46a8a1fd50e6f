"""Command-line entry point of `course`: argument parsing and dispatch to one module per command.

Origin: written for dgm-course (MIT licence).

Every command finds the repository root from the current folder (or takes ``--root DIR``), so it
works from anywhere inside the repo and on fixture trees in tests. User errors end with a one-line
message and exit status 1; argparse usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from course.projects import CourseError, resolve_root


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests to check the documented options)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        metavar="DIR",
        help="repository root (default: found upwards from the current folder)",
    )
    parser = argparse.ArgumentParser(
        prog="course",
        description="Tools for the Deep Generative Models course repository.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "new", parents=[common], help="start projects/<slug>/ from templates/project/"
    )
    p.add_argument("slug", help="folder and import name: ^[a-z][a-z0-9_]{1,31}$")
    p.add_argument("--title", required=True, help="project title (one line)")
    p.add_argument("--paper-url", required=True, help="the paper's URL (arXiv or proceedings)")
    p.add_argument("--topic", help="course topic, e.g. latent-variable (default: from --week)")
    p.add_argument("--week", type=int, help="course week 3-12 (default: from --topic)")
    p.add_argument("--developer", help="developer's name (default: a TODO marker)")

    p = sub.add_parser(
        "check",
        parents=[common],
        help="verify projects against the course rules",
        description="Verify projects against CONVENTIONS.md; one line per failure: "
        "`path: what is wrong -> how to fix`. Exit 0 only when nothing failed.",
        epilog="Notebook outputs are required once a project is v2 or ships a checkpoint. "
        "TODO/TBD/FIXME markers are warnings in v1 and errors in v2. REVIEW.md must fit the "
        "format of reviews/README.md: text under Findings that does not parse, a submitted "
        "review signed by a reviewer not assigned in reviews/assignments.toml, a finding "
        "without its issue link and, in v2, a finding without a valid response are errors. "
        "With no slug, the "
        "repo-wide rules run too: shared_utils origins, reviews/assignments.toml and "
        "pickles outside projects/.",
    )
    p.add_argument("slugs", nargs="*", metavar="slug", help="projects to check (default: all)")

    p = sub.add_parser(
        "pickles",
        parents=[common],
        help="find pickle bytes in files, whatever their names (the pre-commit hook)",
        description="One line per file that holds a pickle, a torch.save zip archive, a NumPy "
        "object array or any of these compressed; exit 1 if any. Without files: every file "
        "git tracks.",
    )
    p.add_argument("files", nargs="*", metavar="file", help="files to scan (default: all tracked)")

    p = sub.add_parser("run", parents=[common], help="execute notebooks headlessly into build/")
    p.add_argument("slugs", nargs="*", metavar="slug", help="projects to run (default: all)")
    p.add_argument("--smoke", action="store_true", help="set DGM_SMOKE=1 (the tiny CI run)")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="seconds allowed per notebook (default: 1800)",
    )

    p = sub.add_parser(
        "status",
        parents=[common],
        help="one row per project; the review index",
        description="One row per project: version, course check, people, review due date (and "
        "whether it is overdue), review state, findings by response, the reviewer's ratings, "
        "when the notebook last ran, the headline number. --format markdown prints the review "
        "index (one row per review assignment); --write-index writes it to reviews/index.md, "
        "which git ignores: it is generated, never committed.",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "markdown"),
        default="table",
        help="table (default), json (every field), markdown (the review index)",
    )
    p.add_argument(
        "--today",
        type=_date,
        metavar="YYYY-MM-DD",
        help="the date that due dates are compared with (default: today)",
    )
    p.add_argument(
        "--write-index",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the review index to PATH (default: reviews/index.md) instead of printing",
    )

    p = sub.add_parser(
        "site",
        parents=[common],
        help="build the course site into build/site (Sphinx, from the committed notebooks)",
        description="Build the course site into build/site: a page per project (README, "
        "notebook with its stored outputs, links to its files), the results table, a page per "
        "topic and the guides. Any Sphinx warning (a broken link, a missing image) fails it.",
    )
    p.add_argument(
        "--executed",
        action="store_true",
        help="show the notebooks executed by `course run` (build/notebooks/) where there are some",
    )
    p.add_argument(
        "--repo-url",
        metavar="URL",
        help="link files to this repository (default: GitHub Actions' own, else local paths)",
    )
    p.add_argument("--ref", metavar="REF", help="branch or commit for those links (default: main)")

    sub.add_parser(
        "catalog",
        parents=[common],
        help="print the results of every project (Markdown table from project.toml)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        root = resolve_root(args.root)
        if args.command == "new":
            from course import new

            return new.main(
                root, args.slug, args.title, args.paper_url, args.topic, args.week, args.developer
            )
        if args.command == "check":
            from course import check

            return check.main(root, args.slugs)
        if args.command == "pickles":
            from course import pickles

            files = args.files or [str(f) for f in pickles.tracked_files(root)]
            return pickles.main(files)
        if args.command == "run":
            from course import run

            return run.main(root, args.slugs, args.smoke, args.timeout)
        if args.command == "status":
            from course import status

            return status.main(root, args.format, args.today, args.write_index)
        if args.command == "site":
            from course import site

            return site.main(root, args.executed, args.repo_url, args.ref)
        if args.command == "catalog":
            from course import catalog

            return catalog.main(root)
    except CourseError as err:
        print(f"course {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"course {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`course status | head`): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so that Python's own flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
