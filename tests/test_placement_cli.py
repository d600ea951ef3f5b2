"""``phalanx place``: human and JSON answers, the why-not exit status, and bad input."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from phalanx.scheduler.cli import EXIT_BAD_INPUT, EXIT_UNPLACEABLE
from phalanx.scheduler.engine import place
from phalanx.scheduler.gangspec import load_gang_file
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.statefile import load_state_file
from phalanx.topology.sources import load_cluster

from phalanx.cli import main

ROOT = Path(__file__).resolve().parents[1]
GANGS = ROOT / "examples" / "gangs"
EXAMPLE_CLUSTERS = {
    "llm-16x8.json": "superpod-h100:64",
    "tp-groups.yaml": "superpod-h100:64",
    "nvl72-tp.json": "nvl72:144",
    "inference-shares.yaml": str(ROOT / "examples" / "clusters" / "mixed-h100-l40s.yaml"),
    "mpi-launcher.yaml": "superpod-h100:64",
    "elastic-quorum.json": "superpod-h100:20",
}


def run(*args: str):
    return CliRunner().invoke(main, ["place", *args])


def test_placed_gang_shows_members_and_cost():
    result = run("--cluster", "superpod-h100:64", "--gang", str(GANGS / "llm-16x8.json"))
    assert result.exit_code == 0, result.output
    assert "placed in su:spine/su0 (level su), 16 members, solver fast" in result.stdout
    assert "llm-pretrain-15" in result.stdout and "0-7" in result.stdout
    for term in ("communication", "fragmentation", "misalignment", "latency", "total"):
        assert term in result.stdout


def test_json_answer_with_a_state_file():
    result = run(
        "--cluster",
        "superpod-h100:64",
        "--gang",
        str(GANGS / "llm-16x8.json"),
        "--state",
        str(GANGS / "state-busy.json"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["placed"] and doc["level"] == "su" and len(doc["members"]) == 16
    busy = {"h100-00000", "h100-00001", "h100-00002", "h100-00003"}
    assert not busy & {m["node"] for m in doc["members"]}
    assert doc["cost"]["total"] == pytest.approx(
        sum(v for k, v in doc["cost"].items() if k != "total")
    )


def test_unplaceable_gang_says_why_with_status_1(tmp_path):
    gang = tmp_path / "big.json"
    gang.write_text(
        json.dumps({"name": "big", "members": 40, "request": {"gpus": 8}, "required_level": "su"})
    )
    result = run("--cluster", "superpod-h100:64", "--gang", str(gang))
    assert result.exit_code == EXIT_UNPLACEABLE
    assert "does not fit now" in result.stdout
    assert "constraint: required_level at level su" in result.stdout
    assert "best su has 32 free nodes" in result.stdout
    as_json = json.loads(run("--cluster", "superpod-h100:64", "--gang", str(gang), "--json").stdout)
    assert as_json["placed"] is False and as_json["constraint"] == "required_level"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "nosuch:4"], "neither a cluster preset"),
        (["--cluster", "superpod-h100:0"], "node count must be at least 1"),
    ],
)
def test_bad_cluster_is_an_error_with_status_2(args, message):
    result = run(*args, "--gang", str(GANGS / "llm-16x8.json"))
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_bad_gang_file_names_file_line_and_field(tmp_path):
    gang = tmp_path / "bad.yaml"
    gang.write_text("name: x\nmembers: 2\nrequest:\n  gpus: -1\n")
    result = run("--cluster", "superpod-h100:4", "--gang", str(gang))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "bad.yaml:4: request.gpus: must be at least 0" in result.stderr


def test_spec_that_can_never_fit_is_an_error(tmp_path):
    gang = tmp_path / "huge.json"
    gang.write_text(json.dumps({"name": "huge", "members": 1, "request": {"gpus": 9}}))
    result = run("--cluster", "superpod-h100:4", "--gang", str(gang))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "asks for gpus 9 but the largest node it may use has 8" in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "zero.json",
            '{"name": "z", "members": 0, "request": {"gpus": 8}}',
            "zero.json:1: members: ",
        ),
        ("empty.json", '{"name": "z", "members": []}', "members: must not be empty"),
        ("nine.json", '{"name": "n", "members": 2, "request": {"gpus": 9}}', "largest node"),
        (
            "level.json",
            '{"name": "l", "members": 2, "request": {"gpus": 8}, "required_level": "rack"}',
            "required_level 'rack' is not a level",
        ),
        (
            "pref.json",
            '{"name": "l", "members": 2, "request": {"gpus": 8}, "preferred_level": "zone"}',
            "preferred_level 'zone' is not a level",
        ),
        (
            "model.json",
            '{"name": "m", "members": 1, "request": {"gpus": 1, "gpu_products": ["B300", "'
            + "NVIDIA-H100-80GB-HBM3"
            + '"]}}',
            "unknown GPU product 'B300'",
        ),
        ("bad.json", '{"name": "x", "members": 2,', "bad.json:1: invalid JSON"),
        ("bad.yaml", "name: x\nmembers: [a\n", "bad.yaml:3: invalid YAML"),
        ("list.json", "[1, 2]", "must be a mapping, got a list"),
        ("milli.json", '{"name": "f", "members": 1, "request": {"gpu_milli": 1000}}', "below"),
        ("missing.json", None, "missing.json: cannot read file"),
    ],
)
def test_bad_gang_spec_is_one_error_line(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    result = run("--cluster", "superpod-h100:4", "--gang", str(path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            {"allocations": [{"gang": "a", "members": [{"node": "ghost", "gpus": [0]}]}]},
            "no node named 'ghost'",
        ),
        (
            {"allocations": [{"gang": "a", "members": [{"node": "h100-00000", "gpus": [0, 9]}]}]},
            "has 8 GPUs",
        ),
        (
            {
                "allocations": [
                    {"gang": "a", "members": [{"node": "h100-00000", "gpus": [0]}]},
                    {"gang": "b", "members": [{"node": "h100-00000", "gpus": [0]}]},
                ]
            },
            "allocations[1] (gang 'b')",
        ),
        ({"allocation": []}, "allocation: unknown field"),
    ],
)
def test_bad_state_file_is_an_error(tmp_path, state, message):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    result = run(
        "--cluster", "superpod-h100:4", "--gang", str(GANGS / "llm-16x8.json"), "--state", str(path)
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, "one problem, one line"


def test_a_bad_state_file_applies_nothing(tmp_path):
    state = ClusterState(load_cluster("superpod-h100:4").compile())
    before = state.compiled.mutable_state_bytes()
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "allocations": [
                    {"gang": "a", "members": [{"node": "h100-00000", "gpus": [0]}]},
                    {"gang": "b", "members": [{"node": "h100-00000", "gpus": [0]}]},
                ]
            }
        )
    )
    with pytest.raises(ValueError, match="cannot take 1000 milli more"):
        load_state_file(path, state)
    assert state.compiled.mutable_state_bytes() == before and not state.holdings


@pytest.mark.parametrize("name", sorted(EXAMPLE_CLUSTERS))
def test_every_example_gang_places_on_its_cluster(name):
    gang = load_gang_file(GANGS / name)
    state = ClusterState(load_cluster(EXAMPLE_CLUSTERS[name]).compile())
    assert isinstance(place(gang, state), Placement)


def test_every_example_gang_is_listed():
    examples = {p.name for p in GANGS.iterdir()} - {"state-busy.json"}
    assert examples == set(EXAMPLE_CLUSTERS)
