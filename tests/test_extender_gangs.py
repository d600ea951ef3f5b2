"""Gang membership from every source, and constraints resolved against the cluster."""

from __future__ import annotations

import pytest
from phalanx.extender.gangs import native, resolve_gang, scheduler_plugins, volcano
from phalanx.extender.gangs.ref import LevelRef, LevelRefKind
from phalanx.extender.hints import gang_hints
from phalanx.extender.records import PodRecord
from phalanx.scheduler.gang import GangSpecError
from phalanx.topology.presets import cluster_preset


def pod(labels=None, annotations=None, spec=None, name="w-0"):
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": spec or {},
    }


def lookup_from(objects):
    return lambda kind, ns, name: objects.get((kind.source, ns, name))


def test_scheduler_plugins_label_and_podgroup():
    groups = {
        ("scheduler-plugins", "ml", "pg"): {"spec": {"minMember": 4, "scheduleTimeoutSeconds": 60}}
    }
    ref = resolve_gang(pod(labels={"scheduling.x-k8s.io/pod-group": "pg"}), lookup_from(groups))
    assert (ref.source, ref.key, ref.min_member, ref.timeout_s) == (
        "scheduler-plugins",
        "ml/pg",
        4,
        60.0,
    )
    missing = resolve_gang(pod(labels={"scheduling.x-k8s.io/pod-group": "other"}), lookup_from({}))
    assert missing.min_member is None and "not found" in missing.problem


def test_volcano_annotation_and_network_topology():
    groups = {
        ("volcano", "ml", "vg"): {
            "spec": {
                "minMember": 2,
                "queue": "research",
                "networkTopology": {"mode": "hard", "highestTierAllowed": 1},
            }
        }
    }
    ref = resolve_gang(pod(annotations={"scheduling.k8s.io/group-name": "vg"}), lookup_from(groups))
    assert ref.min_member == 2 and ref.queue == "research"
    assert ref.required == LevelRef(LevelRefKind.TIER, "1")


def test_kueue_needs_total_count():
    labels = {"kueue.x-k8s.io/pod-group-name": "kg", "kueue.x-k8s.io/queue-name": "lq"}
    ann = {
        "kueue.x-k8s.io/pod-group-total-count": "3",
        "kueue.x-k8s.io/podset-required-topology": "phalanx.io/su",
    }
    ref = resolve_gang(pod(labels=labels, annotations=ann), lookup_from({}))
    assert (ref.key, ref.min_member, ref.queue) == ("ml/kg", 3, "lq")
    assert ref.required == LevelRef(LevelRefKind.LABEL, "phalanx.io/su")
    bad = resolve_gang(pod(labels=labels), lookup_from({}))
    assert bad.min_member is None and "pod-group-total-count" in bad.problem


def test_native_scheduling_group():
    groups = {
        ("native", "ml", "ng"): {
            "spec": {
                "schedulingPolicy": {"gang": {"minCount": 8}},
                "schedulingConstraints": {"topology": [{"key": "phalanx.io/su"}]},
            }
        }
    }
    ref = resolve_gang(pod(spec={"schedulingGroup": {"podGroupName": "ng"}}), lookup_from(groups))
    assert (ref.source, ref.min_member) == ("native", 8)
    assert ref.required == LevelRef(LevelRefKind.LABEL, "phalanx.io/su")


def test_phalanx_annotation_and_singletons():
    ref = resolve_gang(
        pod(annotations={"phalanx.io/gang": "pg", "phalanx.io/gang-size": "2"}), lookup_from({})
    )
    assert (ref.source, ref.key, ref.min_member) == ("phalanx", "ml/pg", 2)
    bad = resolve_gang(
        pod(annotations={"phalanx.io/gang": "pg", "phalanx.io/gang-size": "two"}), lookup_from({})
    )
    assert "gang-size" in bad.problem
    alone = resolve_gang(pod(), lookup_from({}))
    assert (alone.source, alone.key, alone.min_member) == ("pod", "ml/pod/w-0", 1)


def test_group_kinds_have_api_paths():
    assert scheduler_plugins.KIND.api_path == "/apis/scheduling.x-k8s.io/v1alpha1"
    assert volcano.KIND.api_path == "/apis/scheduling.volcano.sh/v1beta1"
    assert native.KIND.api_path == "/apis/scheduling.k8s.io/v1beta1"
    assert native.KIND.versions == ("v1beta1", "v1alpha2")


def _record(p):
    return PodRecord("ml/" + p["metadata"]["name"], "ml", p["metadata"]["name"], "", "g", p, None)


def test_hints_resolve_levels_and_reject_unknown_ones():
    compiled = cluster_preset("dgx-h100:64").compile()
    ref = resolve_gang(
        pod(
            labels={"kueue.x-k8s.io/pod-group-name": "k"},
            annotations={
                "kueue.x-k8s.io/pod-group-total-count": "2",
                "kueue.x-k8s.io/podset-required-topology": "phalanx.io/su",
                "phalanx.io/nvlink-group": "2",
            },
        ),
        lookup_from({}),
    )
    p = pod(annotations={"phalanx.io/nvlink-group": "2", "phalanx.io/preferred-level": "node"})
    hints = gang_hints(ref, [_record(p)], compiled)
    assert (hints.required_level, hints.preferred_level, hints.nvlink_group) == ("su", "node", 2)
    bad = pod(annotations={"phalanx.io/required-level": "galaxy"})
    with pytest.raises(GangSpecError, match="unknown topology level 'galaxy'"):
        gang_hints(resolve_gang(bad, lookup_from({})), [_record(bad)], compiled)
    worse = pod(annotations={"phalanx.io/comm-intensity": "lots"})
    with pytest.raises(GangSpecError, match="comm-intensity"):
        gang_hints(resolve_gang(worse, lookup_from({})), [_record(worse)], compiled)
