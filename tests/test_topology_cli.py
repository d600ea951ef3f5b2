"""``phalanx topology show|validate|discover`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import yaml
from click.testing import CliRunner
from phalanx.topology.discovery import ANNOTATION_GPU_TOPOLOGY
from phalanx.topology.presets import cluster_preset

from phalanx.cli import main
from tests.topology_strategies import as_kube, kube_node

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "clusters"
DGX = ROOT / "topology" / "fixtures" / "nvml-dgx-h100.json"
PAIRS = ROOT / "topology" / "fixtures" / "nvml-pcie-pairs.json"


def run(*args: str):
    return CliRunner().invoke(main, ["topology", *args])


def test_show_a_preset_prints_counts_levels_and_costs():
    result = run("show", "superpod-h100:64")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cluster superpod-h100:64: 64 nodes, 512 GPUs (512 usable)" in out
    assert "NVIDIA-H100-80GB-HBM3" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["su"][:3] == ["su", "10", "2"]
    assert lines["spine"][:3] == ["spine", "11", "1"]
    assert "network cost 9" in out


def test_show_json_is_one_object():
    result = run("show", str(EXAMPLES / "mixed-h100-l40s.yaml"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["nodes"] == 96 and summary["gpus"] == 768
    assert summary["gpus_by_product"] == {"NVIDIA-H100-80GB-HBM3": 512, "NVIDIA-L40S": 256}
    assert [lvl["name"] for lvl in summary["levels"]] == ["node", "su", "spine", "core"]
    assert summary["levels"][3]["oversubscription"] == 2
    l40s = next(t for t in summary["node_types"] if t["product"] == "NVIDIA-L40S")
    assert l40s["pair_cost"][0][4] == 30.0


def test_show_reads_a_saved_node_list(tmp_path):
    path = tmp_path / "nodes.json"
    items = as_kube(cluster_preset("nvl72:36"))
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    result = run("show", str(path), "--json")
    assert result.exit_code == 0, result.output
    levels = json.loads(result.stdout)["levels"]
    assert [(lvl["name"], lvl["nvlink"]) for lvl in levels][:2] == [
        ("node", False),
        ("clique", True),
    ]


def test_show_marks_mig_costs_as_infinite(tmp_path):
    doc = json.loads(run("discover", "--replay", str(PAIRS)).stdout)
    node = kube_node("pairs", gpus=7, annotations={ANNOTATION_GPU_TOPOLOGY: json.dumps(doc)})
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump({"kind": "NodeList", "items": [node]}))
    summary = json.loads(run("show", str(path), "--json").stdout)
    (node_type,) = summary["node_types"]
    assert node_type["pair_cost"][6][7] is None
    assert summary["usable_gpus"] == 7
    text = run("show", str(path)).stdout
    assert "inf" in text and "nvlink bridge" in text


def test_show_rejects_what_is_neither_preset_nor_file():
    result = run("show", "no-such-cluster")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: 'no-such-cluster' is neither a cluster preset")
    assert "Traceback" not in result.output
    result = run("show", "dgx-h100:lots")
    assert result.exit_code == 2 and "not an integer" in result.stderr


def test_validate_accepts_the_examples():
    for path in sorted(EXAMPLES.glob("*")):
        result = run("validate", str(path))
        assert result.exit_code == 0, result.output
        assert ": ok: " in result.stdout


def test_validate_lists_every_problem_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "fabric:\n  levels:\n    - {name: rack, cost: -1}\n"
        "node_pools:\n  - {name: a, preset: dgx-h900, count: 0}\n"
    )
    result = run("validate", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {path}: 3 problems"
    assert lines[1] == f"error: {path}:3: fabric.levels[0].cost: must be positive, got -1"
    assert f"error: {path}:5: node_pools[0].count: must be at least 1, got 0" in lines[2:]
    assert any(
        line.startswith(f"error: {path}:5: node_pools[0].preset: unknown node preset")
        for line in lines[2:]
    )


def test_discover_replays_a_recording_and_can_record_it_again(tmp_path):
    out, rec = tmp_path / "doc.json", tmp_path / "rec.json"
    result = run("discover", "--replay", str(DGX), "-o", str(out), "--record", str(rec))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert len(doc["gpus"]) == 8
    again = run("discover", "--replay", str(rec))
    assert json.loads(again.stdout) == doc


def test_discover_without_drivers_says_so_without_a_traceback(monkeypatch):
    def no_library() -> None:
        raise pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    result = run("discover")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot initialise NVML")
    assert "NVIDIA drivers" in result.stderr
    assert "Traceback" not in result.output


def test_discover_publish_needs_a_node_name(monkeypatch):
    monkeypatch.delenv("NODE_NAME", raising=False)
    result = run("discover", "--replay", str(DGX), "--publish")
    assert result.exit_code == 2
    assert "--node-name" in result.stderr


def test_discover_reports_unreadable_recordings(tmp_path):
    result = run("discover", "--replay", str(tmp_path / "absent.json"))
    assert result.exit_code == 2
    assert "cannot read recording" in result.stderr


def test_topology_help_lists_its_commands():
    result = run("--help")
    assert result.exit_code == 0
    for name in ("show", "validate", "discover"):
        assert name in result.stdout
