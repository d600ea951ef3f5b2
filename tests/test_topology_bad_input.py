"""Bad cluster specs and files on ``phalanx topology``: one ``error:`` line per problem, exit
status 2, no traceback; and presets mean the same on every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from phalanx.simulator.clusters import resolve_cluster
from phalanx.topology.presets import MAX_PRESET_NODES, PHILLY_NODES, cluster_preset
from phalanx.topology.report import cluster_summary
from phalanx.topology.sources import load_cluster

from phalanx.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def error_lines(result) -> list[str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    return lines


def test_a_preset_size_above_the_maximum_is_refused_before_building():
    spec = "superpod-h100:100000000"
    for argv in (
        ["topology", "show", spec],
        ["place", "--cluster", spec, "--gang", "examples/gangs/llm-16x8.json"],
    ):
        (line,) = error_lines(run(*argv))
        assert f"'{spec}': node count 100,000,000 is above the maximum, 100,000" in line
    with pytest.raises(ValueError, match="above the maximum"):
        cluster_preset(f"dgx-h100:{MAX_PRESET_NODES + 1}")


def test_philly_is_a_preset_everywhere():
    result = run("topology", "show", "philly:40")
    assert result.exit_code == 0, result.output
    assert "cluster philly:40: 40 nodes, 320 GPUs (320 usable)" in result.stdout
    assert len(load_cluster("philly").nodes) == PHILLY_NODES, "the trace's size by default"


@pytest.mark.parametrize("spec", ["philly:40", "philly"])
def test_the_philly_preset_is_the_simulators_philly_cluster(spec: str):
    """The simulator builds its Philly cluster from the topology preset's host: the two agree
    on everything but the node names."""
    ours = cluster_summary(load_cluster(spec).compile())
    theirs = cluster_summary(resolve_cluster(spec).compile())
    for summary in (ours, theirs):
        summary.pop("name")
        for node_type in summary["node_types"]:
            node_type.pop("example")  # a node name
    assert ours == theirs


def test_a_cluster_file_reports_fabric_and_node_preset_problems_together(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "fabric:\n"
        "  preset: rail-fat-wrong\n"
        "  oversubscription: 0.5\n"
        "node_pools:\n"
        "  - name: a\n"
        "    count: 4\n"
        "    preset: dgx-h900\n"
        "  - name: b\n"
        "    count: 1000000\n"
        "    preset: dgx-h100\n"
    )
    lines = error_lines(run("topology", "validate", str(path)))
    assert lines == [
        f"error: {path}: 4 problems",
        f"error: {path}:3: fabric.preset: must be one of rail-fat-tree, got 'rail-fat-wrong'",
        f"error: {path}:4: fabric.oversubscription: must be at least 1.0, got 0.5",
        f"error: {path}:8: node_pools[0].preset: unknown node preset 'dgx-h900'; known: "
        "dgx-a100, dgx-h100, gb200-nvl72, hgx-pcie-l40s, philly",
        f"error: {path}:10: node_pools[1].count: at most 100000 nodes per pool, got 1000000",
    ]
