"""Machine-readable output: ``phalanx policies --json`` and ``phalanx topology validate --json``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from phalanx.policies.registry import KINDS, list_policies

from phalanx.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clusters"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_policies_json_lists_every_registered_policy():
    result = run("policies", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["kind"], r["name"], r["description"]) for r in rows] == list_policies()
    assert {r["kind"] for r in rows} == set(KINDS)
    only = json.loads(run("policies", "--json", "--kind", "scorer").stdout)
    assert only and {r["kind"] for r in only} == {"scorer"}
    assert {"topology", "fgd"} <= {r["name"] for r in only}


def test_validate_json_on_a_good_file_gives_counts_and_levels():
    path = EXAMPLES / "pcie-lab.json"
    result = run("topology", "validate", "--json", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "file": str(path),
        "ok": True,
        "nodes": 6,
        "gpus": 16,
        "levels": ["node", "rack", "cluster"],
        "problems": [],
    }


def test_validate_json_lists_every_problem_with_line_and_field(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "fabric: {preset: rail-fat-wrong}\nnode_pools:\n  - {name: a, count: 0, preset: dgx-h100}\n"
    )
    result = run("topology", "validate", "--json", str(path))
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "file": str(path),
        "ok": False,
        "problems": [
            {
                "line": 1,
                "field": "fabric.preset",
                "message": "must be one of rail-fat-tree, got 'rail-fat-wrong'",
            },
            {"line": 3, "field": "node_pools[0].count", "message": "must be at least 1, got 0"},
        ],
    }
    assert result.stderr == "", "--json: the JSON is the whole report"


def test_validate_json_reports_unparsable_and_missing_files(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("node_pools:\n  - [1\n")
    (problem,) = json.loads(run("topology", "validate", "--json", str(path)).stdout)["problems"]
    assert problem["line"] == 3 and problem["message"].startswith("invalid YAML: ")
    missing = tmp_path / "nowhere.yaml"
    result = run("topology", "validate", "--json", str(missing))
    assert result.exit_code == 2
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["line"] is None and problem["message"].startswith("cannot read file")
