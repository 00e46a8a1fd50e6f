"""The `course` entry point: help texts, options and the installed console script.

Origin: written for dgm-course (MIT licence).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from course.cli import build_parser


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "course", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("new", "check", "run", "status", "site", "catalog"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command, options",
    [
        ("new", ["--title", "--paper-url", "--topic", "--week", "--developer", "--root"]),
        ("check", ["--root"]),
        ("run", ["--smoke", "--timeout", "--root"]),
        ("status", ["--format", "--root"]),
        ("site", ["--executed", "--repo-url", "--ref", "--root"]),
        ("catalog", ["--root"]),
    ],
)
def test_subcommand_options(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text


def test_usage_errors_exit_2(capsys):
    parser = build_parser()
    for argv in ([], ["frobnicate"], ["new", "x"], ["status", "--format", "xml"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # no README to rewrite any more
        parser.parse_args(["catalog", "--write"])
    assert exit_info.value.code == 2


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`course status | head`: the reader goes away; no traceback, exit status 141 (SIGPIPE)."""
    import os
    from pathlib import Path

    repo_root = Path(__file__).resolve().parents[2]
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write raises BrokenPipeError
    try:
        result = subprocess.run(
            [sys.executable, "-m", "course", "status", "--root", str(repo_root)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
