"""Every ``phalanx`` subcommand listed in ``phalanx --help`` exists and answers ``--help``, and
``phalanx bench`` runs the benchmark reports."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from phalanx.bench.cli import REPORTS
from phalanx.bench.shared_data import SHARED_DIR_ENV

from phalanx.cli import SUBCOMMANDS, main


def invoke(*argv: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(argv), env=env)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_listed_subcommand_imports_and_answers_help(name: str):
    module = importlib.import_module(SUBCOMMANDS[name][0])
    assert isinstance(module.command, click.Command)
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "Traceback" not in result.output


def test_root_help_lists_every_subcommand():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_every_report_module_has_a_main_that_takes_argv(name: str):
    module = importlib.import_module(REPORTS[name][0])
    result = invoke("bench", name, "--help")
    assert callable(module.main)
    assert result.exit_code == 0, result.output
    assert "usage: " in result.output


def test_bench_without_a_report_lists_them_and_rejects_unknown_ones():
    result = invoke("bench")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()[: len(REPORTS)]] == list(REPORTS)
    result = invoke("bench", "nosuch")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: unknown report 'nosuch'; known: {', '.join(REPORTS)}"
    ]


def test_bench_runs_a_report_with_its_arguments(tmp_path: Path):
    out = tmp_path / "optimality.json"
    result = invoke(
        "bench",
        "optimality",
        "--instances",
        "2",
        "--time-limit",
        "1",
        "--quiet",
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["instances"]) == 2


def test_bench_reports_that_need_the_public_traces_stop_with_one_error(tmp_path: Path):
    env = {SHARED_DIR_ENV: str(tmp_path)}
    for report in ("philly", "fgd"):
        result = invoke("bench", report, env=env)
        assert result.exit_code == 2
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"error: public trace data not found: {tmp_path}")
