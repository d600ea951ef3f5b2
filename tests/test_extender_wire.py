"""The extender wire format: PascalCase in and out, case-insensitive reading, integer scores."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from phalanx.extender import wire

POD = {"metadata": {"name": "w-0", "namespace": "ml", "uid": "u1"}, "spec": {}}


def test_reads_pascal_and_lower_case_keys():
    for key in ("NodeNames", "nodenames", "nodeNames"):
        doc = wire.decode(orjson.dumps({"Pod": POD, "Nodes": None, key: ["a", "b"]}))
        assert wire.parse_extender_args(doc).node_names == ["a", "b"]


def test_nodes_mode_returns_node_objects():
    items = [{"metadata": {"name": n}} for n in ("a", "b")]
    args = wire.parse_extender_args(
        wire.decode(orjson.dumps({"Pod": POD, "Nodes": {"items": items}, "NodeNames": None}))
    )
    assert args.node_names == ["a", "b"]
    reply = wire.filter_reply(["b"], node_objects=args.node_objects)
    assert reply["NodeNames"] is None and reply["Nodes"]["items"] == [items[1]]


def test_filter_reply_has_every_key_in_pascal_case():
    reply = wire.filter_reply(["n1"], {"n2": "why"})
    assert reply == {
        "Nodes": None,
        "NodeNames": ["n1"],
        "FailedNodes": {"n2": "why"},
        "FailedAndUnresolvableNodes": None,
        "Error": "",
    }


def test_scores_are_integers_in_range():
    out = wire.prioritize_reply(["a", "b", "c"], [12, 3.7, -1])
    assert out == [{"Host": "a", "Score": 10}, {"Host": "b", "Score": 3}, {"Host": "c", "Score": 0}]
    assert b"3.7" not in wire.encode(out)


def test_integer_scores_clamp_alike_few_or_many():
    for size in (1, 3, wire.FEW_SCORES - 1, wire.FEW_SCORES, 200):
        scores = np.arange(size, dtype=np.int64) % 25 - 7
        hosts = [f"n{i}" for i in range(size)]
        want = wire.prioritize_reply(hosts, scores.astype(np.float64))
        got = wire.prioritize_reply(hosts, scores)
        assert got == want
        assert wire.encode(got) == wire.encode(want)


def test_binding_and_preemption_args():
    doc = {"podname": "p", "PodNamespace": "ml", "PodUID": "u", "Node": "n"}
    args = wire.parse_binding_args(wire.fold_keys(doc))
    assert (args.pod_name, args.pod_namespace, args.pod_uid, args.node) == ("p", "ml", "u", "n")
    pre = wire.parse_preemption_args(
        wire.fold_keys(
            {
                "Pod": POD,
                "NodeNameToMetaVictims": {"n": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 1}},
            }
        )
    )
    assert pre.victims_by_node == {"n": ["v1"]} and pre.pdb_violations_by_node == {"n": 1}
    reply = wire.preemption_reply({"n": ["v1"]}, {"n": 1})
    assert reply == {
        "NodeNameToMetaVictims": {"n": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 1}}
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"Pod": 3, "NodeNames": []}', "Pod must be a Pod object"),
        (b'{"Pod": {"metadata": {}}, "NodeNames": []}', "Pod.metadata.name"),
        (b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": "a"}', "NodeNames must be a list"),
        (b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": [1]}', "NodeNames must be a list"),
        (b'{"Pod": {"metadata": {"name": "x"}}}', "neither NodeNames nor Nodes"),
    ],
)
def test_bad_requests_name_the_problem(body: bytes, message: str):
    with pytest.raises(wire.WireError, match=message):
        wire.parse_extender_args(wire.decode(body))


def test_bad_binding_names_the_field():
    with pytest.raises(wire.WireError, match="Node must be"):
        wire.parse_binding_args({"podname": "p", "podnamespace": "ml", "node": 5})
