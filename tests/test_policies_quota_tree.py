"""Quota trees: parsing, units, and clear errors for every kind of invalid tree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from phalanx.policies.queue.quota_tree import QuotaTree, QuotaTreeError
from phalanx.policies.resources import Resources

GOOD = {
    "queues": [
        {"name": "research", "guaranteed": {"gpu": 8}, "borrowing_limit": {"gpu": 4}, "weight": 2},
        {"name": "nlp", "parent": "research", "guaranteed": {"gpu": 4.5, "cpu": 32}},
        {"name": "vision", "parent": "research", "guaranteed": {"gpu_milli": 2000}},
        {"name": "prod", "guaranteed": {"gpu": 8, "memory_gib": 2}},
    ]
}


def test_a_good_tree_parses_with_units() -> None:
    tree = QuotaTree.from_spec(GOOD)
    nlp = tree.queues["nlp"]
    assert nlp.guaranteed == Resources(4500, 32000, math.inf)
    assert tree.queues["vision"].guaranteed.gpu_milli == 2000
    assert tree.queues["prod"].guaranteed.memory_mib == 2048
    assert tree.queues["research"].limit.gpu_milli == 12000
    assert tree.queues["nlp"].borrowing_limit.gpu_milli == math.inf
    assert tree.queues["research"].weight == 2.0
    assert tree.path("nlp") == ["nlp", "research"]
    assert tree.is_leaf("nlp") and not tree.is_leaf("research")
    assert tree.leaf_error("nlp") is None
    assert "has child queues" in (tree.leaf_error("research") or "")
    assert "not in the quota tree" in (tree.leaf_error("nope") or "")
    assert QuotaTree.from_spec(GOOD["queues"]).queues.keys() == tree.queues.keys()


def bad(*queues: dict[str, object]) -> dict[str, object]:
    return {"queues": list(queues)}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"queues": []}, "has no queues"),
        ({"queue": []}, "unknown top-level field"),
        ({"queues": "a"}, "expected a list of queues"),
        (bad({"name": "a"}, {"name": "a"}), "queue 'a' is defined twice"),
        (bad({"name": "a", "parent": "b"}), "names parent 'b', which is not defined"),
        (bad({"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}), "its own ancestor"),
        (bad({"name": ""}), "'name' must be a non-empty string"),
        (bad("a"), r"queues\[0\]: each queue must be a mapping"),
        (bad({"name": "a", "colour": 1}), "unknown field"),
        (bad({"name": "a", "weight": 0}), "'weight' must be a positive number"),
        (bad({"name": "a", "weight": True}), "'weight' must be a positive number"),
        (bad({"name": "a", "guaranteed": {"gpus": 1}}), "unknown resource 'gpus'"),
        (bad({"name": "a", "guaranteed": {"gpu": -1}}), r"\.gpu: must be a non-negative"),
        (bad({"name": "a", "guaranteed": {"gpu": "8"}}), "must be a non-negative number"),
        (bad({"name": "a", "guaranteed": {"gpu": 1, "gpu_milli": 5}}), "gpu_milli given twice"),
        (bad({"name": "a", "guaranteed": 8}), "must be a mapping of resource to amount"),
        (bad({"name": "a", "parent": 3}), "'parent' must be a queue name"),
        (
            bad(
                {"name": "p", "guaranteed": {"gpu": 4}},
                {"name": "c1", "parent": "p", "guaranteed": {"gpu": 3}},
                {"name": "c2", "parent": "p", "guaranteed": {"gpu": 2}},
            ),
            "children of queue 'p' guarantee 5000 gpu_milli, more than its own 4000",
        ),
    ],
)
def test_invalid_trees_name_the_problem(spec: object, message: str) -> None:
    with pytest.raises(QuotaTreeError, match=message):
        QuotaTree.from_spec(spec, where="quotas.yaml")


def test_errors_name_the_queue_and_where() -> None:
    with pytest.raises(QuotaTreeError, match=r"^quotas\.yaml: queues\[1\] \('b'\): field 'weight'"):
        QuotaTree.from_spec(bad({"name": "a"}, {"name": "b", "weight": -2}), where="quotas.yaml")


def test_top_level_guarantees_must_fit_the_cluster() -> None:
    tree = QuotaTree.from_spec(GOOD)
    tree.check_capacity(Resources(16000, 1e9, 1e9))
    with pytest.raises(QuotaTreeError, match="guarantee 16000 gpu_milli but the cluster has 8000"):
        tree.check_capacity(Resources(8000, 1e9, 1e9))


def test_yaml_files_load_and_report_the_line(tmp_path: Path) -> None:
    good = tmp_path / "q.yaml"
    good.write_text("queues:\n  - name: a\n    guaranteed: {gpu: 2}\n")
    assert QuotaTree.load(good).queues["a"].guaranteed.gpu_milli == 2000
    broken = tmp_path / "broken.yaml"
    broken.write_text("queues:\n  - name: a\n    guaranteed: {gpu: 2\n")
    with pytest.raises(QuotaTreeError, match=r"broken\.yaml, line \d+: not valid YAML"):
        QuotaTree.load(broken)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("queues:\n  - name: a\n    weight: 0\n")
    with pytest.raises(QuotaTreeError, match=r"invalid\.yaml: queues\[0\] \('a'\)"):
        QuotaTree.load(invalid)
    with pytest.raises(QuotaTreeError, match="cannot read quota tree"):
        QuotaTree.load(tmp_path / "missing.yaml")
