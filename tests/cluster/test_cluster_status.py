"""What operators see, through the real apiserver and kube-scheduler (marker ``cluster``): a
waiting gang's group carries the phase and conditions of its dialect, the gang has Events with
Phalanx's reason code, a bound gang's group says so, and ``kubectl-phalanx explain`` names the
reason.

Per dialect one scenario on four 8-GPU nodes: a gang of 5 x 8 GPUs that can never fit, and a
gang of 3 x 8 GPUs whose third member comes later (it waits for members, then binds whole).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client
from phalanx.extender.kubectl_plugin import main as kubectl_phalanx

from tests.cluster.objects import (
    KUEUE,
    NATIVE,
    PHALANX,
    SCHEDULER_PLUGINS,
    VOLCANO,
    GangSpec,
    create_group,
    gang_pod,
    group_object,
    wait_for,
    wait_gang_bound,
)

pytestmark = pytest.mark.cluster

TIMEOUT_S = 30.0
CONTROLLER = "phalanx.io/extender"
GROUP_DIALECTS = (SCHEDULER_PLUGINS, VOLCANO, NATIVE)


def phalanx_events(scenario, name: str, reason: str) -> list[Any]:
    """Phalanx's events (events.k8s.io/v1) about object ``name`` with ``reason``."""
    events = client.EventsV1Api(scenario.api).list_namespaced_event(scenario.namespace).items
    return [
        e
        for e in events
        if e.reporting_controller == CONTROLLER
        and e.reason == reason
        and e.regarding
        and e.regarding.name == name
    ]


def group_status(scenario, gang: GangSpec) -> dict[str, Any]:
    found = group_object(gang, scenario.namespace)
    assert found is not None
    api_group, version, _ = found
    obj = client.CustomObjectsApi(scenario.api).get_namespaced_custom_object(
        api_group, version, scenario.namespace, "podgroups", gang.name
    )
    return obj.get("status") or {}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def waits_with(status: dict[str, Any], dialect: str, code: str) -> bool:
    """Whether a group's status says it waits with reason ``code``, in the dialect's fields."""
    if dialect == SCHEDULER_PLUGINS:
        return status.get("phase") == "Pending"
    if dialect == VOLCANO:
        unschedulable = conditions(status).get("Unschedulable") or {}
        return status.get("phase") == "Pending" and unschedulable.get("reason") == code
    waiting = conditions(status).get("phalanx.io/Waiting") or {}
    return waiting.get("status") == "True" and waiting.get("reason") == code


def placed(status: dict[str, Any], dialect: str) -> bool:
    if dialect == SCHEDULER_PLUGINS:
        return status.get("phase") in ("Scheduled", "Running") and status.get("scheduled") == 3
    if dialect == VOLCANO:
        scheduled = conditions(status).get("Scheduled") or {}
        return status.get("phase") == "Running" and scheduled.get("status") == "True"
    initially = conditions(status).get("PodGroupInitiallyScheduled") or {}
    waiting = conditions(status).get("phalanx.io/Waiting") or {}
    return initially.get("status") == "True" and waiting.get("reason") == "Bound"


def explain(scenario, name: str) -> str:
    url = scenario.plane.extender_url
    result = CliRunner().invoke(kubectl_phalanx, ["explain", name, "--server", url])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("dialect", [SCHEDULER_PLUGINS, VOLCANO, NATIVE, PHALANX, KUEUE])
def test_waiting_and_bound_gangs_are_told_in_their_dialect(kube_cluster, dialect):
    scenario = kube_cluster("dgx-h100:4")
    ns = scenario.namespace
    core = client.CoreV1Api(scenario.api)
    never = GangSpec(f"never-{dialect}", members=5, gpus=8, dialect=dialect)
    later = GangSpec(f"later-{dialect}", members=3, gpus=8, dialect=dialect)
    for gang in (never, later):
        group = group_object(gang, ns)
        if group is not None:
            create_group(scenario.api, group, ns)
    for i in range(never.members):
        core.create_namespaced_pod(ns, gang_pod(never, i, ns))
    for i in range(later.members - 1):
        core.create_namespaced_pod(ns, gang_pod(later, i, ns))

    # the gang that never fits: its group (or its pods) say never_fits, and so does explain
    told = never.name if dialect in GROUP_DIALECTS else f"{never.name}-0"
    event = wait_for(
        f"a never_fits event on {told}",
        lambda: phalanx_events(scenario, told, "never_fits"),
        TIMEOUT_S,
    )[0]
    assert event.type == "Warning" and f"gang {ns}/{never.name} [never_fits]" in event.note
    if dialect in GROUP_DIALECTS:
        wait_for(
            "the never-fitting group's status",
            lambda: waits_with(group_status(scenario, never), dialect, "never_fits"),
            TIMEOUT_S,
        )
    said = explain(scenario, f"{ns}/{never.name}")
    print(f"{event.type} {event.reason} {event.regarding.kind}/{told}: {event.note}\n{said}")
    assert "waiting: never_fits" in said

    # the gang that waits for its third member (a pod is told when it first waits)
    told = later.name if dialect in GROUP_DIALECTS else f"{later.name}-1"
    event = wait_for(
        f"a waiting_for_members event on {told}",
        lambda: phalanx_events(scenario, told, "waiting_for_members"),
        TIMEOUT_S,
    )[0]
    assert event.type == "Normal" and "[waiting_for_members]" in event.note
    if dialect in GROUP_DIALECTS:
        wait_for(
            "the waiting group's status",
            lambda: waits_with(group_status(scenario, later), dialect, "waiting_for_members"),
            TIMEOUT_S,
        )
    assert "waiting: waiting_for_members" in explain(scenario, f"{ns}/{later.name}-1")
    time.sleep(1.0)  # retries of the waiting members add no events
    assert len(phalanx_events(scenario, told, "waiting_for_members")) == 1

    core.create_namespaced_pod(ns, gang_pod(later, later.members - 1, ns))
    wait_gang_bound(scenario.api, ns, later, TIMEOUT_S)
    if dialect in GROUP_DIALECTS:
        wait_for(
            "the bound group's status",
            lambda: placed(group_status(scenario, later), dialect),
            TIMEOUT_S,
        )
    wait_for(
        "a Bound event",
        lambda: phalanx_events(scenario, told, "Bound"),
        TIMEOUT_S,
    )
    assert phalanx_events(scenario, told, "Planned")
    assert "bound" in explain(scenario, f"{ns}/{later.name}")
