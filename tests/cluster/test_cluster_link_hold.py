"""The ``link-hold`` permit through the real kube-scheduler (marker ``cluster``).

32 DGX H100 nodes in scalable units of 4 (``examples/clusters/rail-fat-tree-32.yaml``,
exported to Nodes; the extender reads the units back from their labels). Every node is filled
with a one-node gang that declares a 10-minute run; then one node frees in each of two units,
so a 2 x 8-GPU gang that declares a 10-hour run fits only across units. With
``policies.permit: link-hold`` and the spine's cost given in ``kube.levelCosts`` (22 against 10
inside a unit) Phalanx holds it (its links would cost 2.2x, worth about 3.6 hours of its run,
and the fillers are expected to end long before that), kube-scheduler reports the hold's reason
and binds nothing; when a second node of one unit frees, kube-scheduler tries the members again
and the gang is bound inside that unit. A hold that runs out with nothing else happening is
noticed at once: the extender writes a condition into the held members' status, which
kube-scheduler answers by trying them again.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.cluster.objects import (
    GangSpec,
    bound,
    create_gang,
    delete_pods,
    pods_of,
    wait_for,
    wait_gang_bound,
)
from tests.cluster.test_cluster_gangs import (
    BIND_TIMEOUT_S,
    WAIT_WHOLE_S,
    assert_no_gpu_twice,
    assert_on_plan,
    failed_scheduling_notes,
)

pytestmark = pytest.mark.cluster

CLUSTER = Path(__file__).resolve().parents[2] / "examples" / "clusters" / "rail-fat-tree-32.yaml"
SPINE = {"kube": {"levelCosts": {"spine": 22}}}
"""The file's 2:1 spine: Node labels carry the units, not the spine's oversubscription."""
HOLD_SETTINGS = {"policies": {"permit": "link-hold"}, **SPINE}
ESTIMATE = "phalanx.io/runtime-estimate-seconds"
FILLER_RUN_S = "600"
GANG_RUN_S = "36000"
UNIT_LABEL = "phalanx.io/su"
BOUND_AFTER_FREED_S = 10.0
"""The held gang must be bound this soon after the unit's second node frees (or its hold
ends)."""
QUIET_HOLD_S = 5.0


def split_units(scenario) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Fills every node with a one-node gang, then frees one node in each of the first two
    units; returns each node's unit and the fillers left, by unit."""
    api, namespace = scenario.api, scenario.namespace
    unit_of = {n["metadata"]["name"]: n["metadata"]["labels"][UNIT_LABEL] for n in scenario.nodes}
    fillers = [
        GangSpec(f"fill-{i}", 1, 8, extra_annotations=((ESTIMATE, FILLER_RUN_S),))
        for i in range(len(scenario.nodes))
    ]
    for filler in fillers:
        create_gang(api, filler, namespace)
    by_unit: dict[str, list[str]] = defaultdict(list)
    for filler in fillers:
        node = wait_gang_bound(api, namespace, filler, BIND_TIMEOUT_S)[f"{filler.name}-0"]
        by_unit[unit_of[node]].append(filler.name)
    for unit in sorted(by_unit)[:2]:
        delete_pods(api, namespace, by_unit[unit].pop(0))
    return unit_of, by_unit


def test_a_gang_that_fits_only_across_units_is_held_until_a_unit_frees(kube_cluster):
    scenario = kube_cluster(str(CLUSTER), serve=HOLD_SETTINGS)
    api, namespace = scenario.api, scenario.namespace
    unit_of, by_unit = split_units(scenario)
    first = sorted(by_unit)[0]

    gang = GangSpec("held", 2, 8, extra_annotations=((ESTIMATE, GANG_RUN_S),))
    create_gang(api, gang, namespace)
    notes = wait_for(
        "a FailedScheduling event with the hold's reason",
        lambda: [n for n in failed_scheduling_notes(scenario, "held-0") if "[link_hold]" in n],
        BIND_TIMEOUT_S,
    )
    assert "held for faster links: its links now cost 2.20x" in notes[0], notes
    time.sleep(WAIT_WHOLE_S)
    assert bound(pods_of(api, namespace, gang.name)) == {}

    delete_pods(api, namespace, by_unit[first][0])
    freed_at = time.monotonic()
    placed = wait_gang_bound(api, namespace, gang, BIND_TIMEOUT_S)
    bound_after_s = time.monotonic() - freed_at
    print(f"held gang bound {bound_after_s:.1f} s after its unit's second node freed")
    assert {unit_of[node] for node in placed.values()} == {first}
    assert bound_after_s <= BOUND_AFTER_FREED_S
    pods = pods_of(api, namespace)
    assert_on_plan([p for p in pods if p.metadata.name.startswith("held-")])
    assert_no_gpu_twice(pods)


def test_a_hold_that_runs_out_in_a_quiet_cluster_is_retried_at_once(kube_cluster):
    """A 5 s hold and nothing else happening: kube-scheduler has no event for the end of a
    hold and would retry the members at its periodic flush (bound 322 s after creation
    before the extender sent them back); the extender writes the LinkHold condition into
    their status when the hold ends and the gang is bound across units soon after."""
    settings = {
        "policies": {
            "permit": "link-hold",
            "permitOptions": {"max_hold_s": QUIET_HOLD_S, "look_ahead": False},
        },
        **SPINE,
    }
    scenario = kube_cluster(str(CLUSTER), serve=settings)
    api, namespace = scenario.api, scenario.namespace
    unit_of, _ = split_units(scenario)
    gang = GangSpec("quiet", 2, 8, extra_annotations=((ESTIMATE, GANG_RUN_S),))
    created_at = time.monotonic()
    create_gang(api, gang, namespace)
    wait_for(
        "a FailedScheduling event with the hold's reason",
        lambda: [n for n in failed_scheduling_notes(scenario, "quiet-0") if "[link_hold]" in n],
        BIND_TIMEOUT_S,
    )
    placed = wait_gang_bound(api, namespace, gang, BIND_TIMEOUT_S)
    bound_after_s = time.monotonic() - created_at
    print(f"gang held {QUIET_HOLD_S:g} s bound {bound_after_s:.1f} s after it was created")
    assert bound_after_s <= QUIET_HOLD_S + BOUND_AFTER_FREED_S
    assert len({unit_of[node] for node in placed.values()}) == 2
    conditions = {
        c.type: c for p in pods_of(api, namespace, gang.name) for c in (p.status.conditions or [])
    }
    assert conditions["phalanx.io/LinkHold"].reason == "HoldEnded"


def kept_in(note: str, nodes: Iterable[str]) -> list[str]:
    """The node names a hold's reason says are kept for the held gang (kube-scheduler joins
    the reasons of a FailedScheduling event with commas, so the list ends at the first entry
    that is not one of ``nodes``)."""
    _, sep, rest = note.partition("nodes kept for it: ")
    assert sep, note
    known = set(nodes)
    kept = list(itertools.takewhile(known.__contains__, (n.strip() for n in rest.split(","))))
    return kept


def test_the_nodes_a_held_gang_waits_for_go_to_it_not_to_a_gang_that_fits_elsewhere(
    kube_cluster,
):
    """The held gang waits for the unit whose filler is expected to end first: that unit's
    free node and the filler's are kept for it. A one-node gang created meanwhile is bound in
    the other unit's free node (before nodes were kept it could take either), and when the
    kept filler ends the held gang is bound inside the kept unit."""
    scenario = kube_cluster(str(CLUSTER), serve=HOLD_SETTINGS)
    api, namespace = scenario.api, scenario.namespace
    unit_of, _ = split_units(scenario)
    gang = GangSpec("held", 2, 8, extra_annotations=((ESTIMATE, GANG_RUN_S),))
    create_gang(api, gang, namespace)
    notes = wait_for(
        "a FailedScheduling event naming the kept nodes",
        lambda: [
            n for n in failed_scheduling_notes(scenario, "held-0") if "nodes kept for it" in n
        ],
        BIND_TIMEOUT_S,
    )
    kept = kept_in(notes[0], unit_of)
    assert len(kept) == 2 and len({unit_of[n] for n in kept}) == 1, notes[0]
    kept_unit = unit_of[kept[0]]

    other = GangSpec("other", 1, 8, extra_annotations=((ESTIMATE, FILLER_RUN_S),))
    create_gang(api, other, namespace)
    node = wait_gang_bound(api, namespace, other, BIND_TIMEOUT_S)["other-0"]
    print(f"kept for the held gang: {kept}; the one-node gang was bound on {node}")
    assert node not in kept and unit_of[node] != kept_unit
    assert bound(pods_of(api, namespace, gang.name)) == {}

    fillers_on_kept = [
        p.metadata.labels["phalanx-test/gang"]
        for p in pods_of(api, namespace)
        if p.spec.node_name in kept and p.metadata.name.startswith("fill-")
    ]
    assert len(fillers_on_kept) == 1, fillers_on_kept
    delete_pods(api, namespace, fillers_on_kept[0])
    placed = wait_gang_bound(api, namespace, gang, BIND_TIMEOUT_S)
    assert set(placed.values()) == set(kept)
    assert_no_gpu_twice(pods_of(api, namespace))
