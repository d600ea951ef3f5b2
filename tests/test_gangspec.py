"""Gang spec documents: parsing, every problem reported with its field and line, round trip."""

import json

import pytest
from phalanx.scheduler.gang import Gang, GangSpecError, Member, MemberRequest
from phalanx.scheduler.gangspec import gang_from_dict, gang_to_dict, load_gang_file


def test_compact_form_builds_named_members():
    gang = gang_from_dict(
        {
            "name": "llm",
            "members": 3,
            "request": {"gpus": 8, "cpu_milli": 1000, "gpu_products": "NVIDIA-H100-80GB-HBM3"},
            "required_level": "su",
            "nvlink_group": 1,
            "min_members": 2,
        }
    )
    assert [m.name for m in gang.members] == ["llm-0", "llm-1", "llm-2"]
    assert gang.members[0].request == MemberRequest(
        gpus=8, cpu_milli=1000, gpu_products=("NVIDIA-H100-80GB-HBM3",)
    )
    assert (gang.required_level, gang.nvlink_group, gang.quorum) == ("su", 1, 2)


def test_member_list_with_counts_and_a_default_request():
    gang = gang_from_dict(
        {
            "name": "mpi",
            "request": {"gpus": 4},
            "members": [
                {"name": "launcher", "request": {"cpu_milli": 2000}},
                {"name": "worker", "count": 2},
            ],
        }
    )
    assert [m.name for m in gang.members] == ["launcher", "worker-0", "worker-1"]
    assert gang.members[0].request.gpus == 0
    assert gang.members[2].request.gpus == 4


def test_every_problem_is_reported_with_its_field():
    with pytest.raises(GangSpecError) as info:
        gang_from_dict(
            {
                "name": "bad",
                "members": [{"name": "a", "request": {"gpus": "8", "colour": "red"}}, 7],
                "nvlink_group": -1,
                "typo_field": 1,
            },
            source="bad.json",
        )
    message = str(info.value)
    assert message.startswith("bad.json: 5 problems:")
    for expected in (
        "members[0].request.gpus: must be an integer, got a string",
        "members[0].request.colour: unknown field",
        "members[1]: must be a mapping, got an integer",
        "nvlink_group: must be at least 0, got -1",
        "typo_field: unknown field",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"members": 2, "request": {"gpus": 1}}, "name: is required"),
        ({"name": "x", "members": 2}, "request: is required when members is a count"),
        ({"name": "x", "members": []}, "members: must not be empty"),
        ({"name": "x", "members": [{"name": "a"}]}, "no gang-level request is given"),
        ({"name": "x", "members": 0, "request": {}}, "members: must be at least 1"),
        ({"name": "x", "members": 10**9, "request": {}}, "must be at most"),
        ({"name": "x", "members": 2, "request": {"gpus": 1, "gpu_milli": 5}}, "not both"),
        ({"name": "x", "members": 2, "request": {"gpus": 1}, "min_members": 3}, "min_members 3"),
        ({"name": "x", "members": 1, "request": {}, "comm_intensity": 2}, "comm_intensity"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_bad_documents_say_what_is_wrong(doc, message):
    with pytest.raises(GangSpecError, match=message):
        gang_from_dict(doc)


def test_yaml_file_problems_carry_line_numbers(tmp_path):
    path = tmp_path / "gang.yaml"
    path.write_text("name: g\nmembers: 2\nrequest:\n  gpus: eight\n")
    with pytest.raises(GangSpecError, match=r"gang.yaml:4: request.gpus: must be an integer"):
        load_gang_file(path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "gang.json"
    path.write_text('{"name": "g",\n "members": 2,,}')
    with pytest.raises(GangSpecError, match=r"gang.json:2: invalid JSON"):
        load_gang_file(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GangSpecError, match="cannot read file"):
        load_gang_file(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "gang",
    [
        Gang.uniform("u", 4, MemberRequest(gpus=2, node_selector={"pool": "a"}), priority=3),
        Gang(
            "mixed",
            (
                Member("launcher", MemberRequest(cpu_milli=500, tolerations=("spot",))),
                Member("w", MemberRequest(gpu_milli=250, gpu_products=("A", "B"))),
            ),
            min_members=1,
            required_level="su",
            preferred_level="node",
            comm_intensity=0.2,
            runtime_estimate_s=3600.0,
        ),
    ],
)
def test_round_trip_through_json(gang):
    doc = json.loads(json.dumps(gang_to_dict(gang)))
    assert gang_from_dict(doc) == gang
