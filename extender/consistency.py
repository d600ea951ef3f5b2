"""Is the planner's ledger what its pods say it should be?

The ledger (:class:`scheduler.state.ClusterState`) is changed by every verb, by expiries and by
watch events, and a restarted extender rebuilds it from the pods alone
(:meth:`extender.planner.Planner.recover`). So the pods are the ground truth: a consistent
planner holds exactly what a fresh planner rebuilt from the same pods holds for the bound
pods, plus reservations that some live, unbound member of a live gang is waiting on, and
nothing else. This module checks that, for tests and for long fuzzing runs (the webhook never
calls it): a GPU counted twice, a reservation nobody owns or arrays that disagree with the
ledger show up as a list of readable problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from phalanx.extender import podspec
from phalanx.extender.planner import EXTERNAL_PREFIX, Planner
from phalanx.scheduler.state import HoldingPhase


@dataclass(frozen=True, order=True)
class HeldPart:
    """One member's share of a holding, as the comparison sees it."""

    pod: str
    """``namespace/name`` of the pod holding it."""
    node: str
    gpu_count: int
    gpu_milli: int
    cpu_milli: int
    memory_mib: int
    bound: bool
    gpus: tuple[int, ...] = field(compare=False)
    external: bool = field(compare=False)
    """Placed by someone else: its GPU indices are stand-ins (the lowest free ones when it was
    seen), so only their count is compared."""


def ledger_problems(planner: Planner) -> list[str]:
    """Everything wrong with ``planner``'s ledger, [] when it is consistent: the arrays agree
    with the holdings (no GPU counted twice), every holding belongs to a pod the planner still
    knows (no reservation leaked), and the bound part equals that of a planner rebuilt from
    the same pods."""
    with planner.lock:
        problems = _array_problems(planner)
        problems += _ownership_problems(planner)
        live = held_parts(planner)
        overcommitted = set(planner.overcommitted)
        rebuilt_planner = rebuild(planner)
    problems += [f"rebuilt ledger: {p}" for p in _array_problems(rebuilt_planner)]
    problems += [f"rebuilt ledger: {p}" for p in _ownership_problems(rebuilt_planner)]
    overcommitted |= set(rebuilt_planner.overcommitted)
    problems += _compare(live, held_parts(rebuilt_planner), overcommitted)
    return problems


def truth_problems(planner: Planner, listed: Iterable[dict[str, Any]]) -> list[str]:
    """Everything in which ``planner`` disagrees with the cluster's truth, ``listed`` being a
    fresh list of every pod from the apiserver: pods it does not know or still knows after
    they were deleted (a watch that missed events), pods it has on another node or unbound
    (a bind whose answer was lost), and a bound part that differs from a planner rebuilt from
    the list itself (GPUs charged twice or not at all). ``ledger_problems`` checks the planner
    against its own pods; this checks those pods against the cluster."""
    listed_pods = [p for p in listed if not podspec.is_terminal(p)]
    cluster = {podspec.pod_key(p): podspec.node_of(p) for p in listed_pods}
    with planner.lock:
        known = {key: rec.node for key, rec in planner.pods.items()}
        live = held_parts(planner)
        overcommitted = set(planner.overcommitted)
        from_cluster = rebuild(planner, listed_pods)
    problems = []
    for key in sorted(cluster.keys() | known.keys()):
        if key not in known:
            problems.append(f"pod {key} is in the cluster but unknown to the ledger")
        elif key not in cluster:
            problems.append(f"pod {key} is known to the ledger but not in the cluster")
        elif known[key] != cluster[key]:
            problems.append(
                f"pod {key} is bound to {cluster[key]!r} in the cluster, to {known[key]!r} "
                "in the ledger"
            )
    overcommitted |= set(from_cluster.overcommitted)
    problems += [
        f"against the cluster: {p}" for p in _compare(live, held_parts(from_cluster), overcommitted)
    ]
    return problems


def rebuild(planner: Planner, pods: Iterable[dict[str, Any]] | None = None) -> Planner:
    """A fresh planner over the same cluster, policies and settings, recovered from ``pods``
    or, by default, from the pods ``planner`` knows as the apiserver would list them (a pod
    bound by a dry-run bind carries its node and the Binding's annotations, as after a real
    one)."""
    with planner.lock:
        if pods is None:
            pods = [_as_listed(rec.pod, rec.node) for rec in planner.pods.values()]
        groups = dict(planner.groups)
        fresh = Planner(
            planner.compiled.cluster,
            planner.queue,
            scorer=planner.scorer,
            preemption=planner.preemption,
            permit=planner.permit,
            config=planner.config,
            clock=planner.clock,
        )
    fresh.groups = groups
    fresh.recover(pods)
    return fresh


def held_parts(planner: Planner) -> list[HeldPart]:
    """Every member of every holding, sorted."""
    owner = _owners(planner)
    parts = []
    for ledger_key, holding in planner.state.holdings.items():
        external = ledger_key.startswith(EXTERNAL_PREFIX)
        for m in holding.placement.members:
            pod = owner.get((ledger_key, m.member), f"<nobody>:{ledger_key}:{m.member}")
            bound = m.member in holding.bound_members or holding.phase is HoldingPhase.COMMITTED
            parts.append(
                HeldPart(
                    pod,
                    m.node,
                    len(m.gpus),
                    m.gpu_milli if m.gpus else 0,  # a share of no GPU is no share
                    m.cpu_milli,
                    m.memory_mib,
                    bound,
                    tuple(sorted(m.gpus)),
                    external,
                )
            )
    return sorted(parts)


def _owners(planner: Planner) -> dict[tuple[str, str], str]:
    """(ledger key, member name) -> pod key, for every slot a pod record points at."""
    owners: dict[tuple[str, str], str] = {}
    for pod_key, ledger_key in planner.external.items():
        rec = planner.pods.get(pod_key)
        if rec is not None:
            owners[(ledger_key, rec.name)] = pod_key
    for gang in planner.gangs.values():
        for name, ledger_key in gang.slots.items():
            rec = gang.members.get(name)
            if rec is not None:
                owners[(ledger_key, name)] = rec.key
    return owners


def _array_problems(planner: Planner) -> list[str]:
    try:
        planner.state.check_invariants()
    except AssertionError as exc:
        return [f"arrays: {exc}"]
    return []


def _ownership_problems(planner: Planner) -> list[str]:
    """Holdings nobody owns (a leaked reservation), slots pointing at nothing, pods held
    twice."""
    problems = []
    owner = _owners(planner)
    seen: dict[str, str] = {}
    for ledger_key, holding in planner.state.holdings.items():
        for m in holding.placement.members:
            pod = owner.get((ledger_key, m.member))
            if pod is None:
                problems.append(f"holding {ledger_key!r}: member {m.member!r} has no pod")
                continue
            if pod in seen:
                problems.append(f"pod {pod} is held by {seen[pod]!r} and {ledger_key!r}")
            seen[pod] = ledger_key
    for gang in planner.gangs.values():
        for name, ledger_key in gang.slots.items():
            if ledger_key not in planner.state.holdings:
                problems.append(f"gang {gang.key}: slot of {name!r} points at {ledger_key!r}")
        for ledger_key in gang.plans:
            if ledger_key not in planner.state.holdings:
                problems.append(f"gang {gang.key}: plan {ledger_key!r} is not in the ledger")
    return problems


def _compare(
    live: Iterable[HeldPart], rebuilt: Iterable[HeldPart], overcommitted: set[str]
) -> list[str]:
    """Bound parts must match: same pods, nodes and amounts, and the same GPU indices where
    Phalanx chose them on both sides. Reservations are not compared: gangs planned but not
    bound yet are planned again after a restart, and a plan that expired or moved live is
    re-reserved where its annotation says. Pods on a node that some bound pod overcommits are
    left out: what each of them is charged depends on the order they were seen in."""
    crowded = {p.node for p in [*live, *rebuilt] if p.pod in overcommitted}
    live_bound = {p.pod: p for p in live if p.bound and p.node not in crowded}
    rebuilt_bound = {p.pod: p for p in rebuilt if p.bound and p.node not in crowded}
    problems = []
    for pod in sorted(live_bound.keys() | rebuilt_bound.keys()):
        a, b = live_bound.get(pod), rebuilt_bound.get(pod)
        if a is None or b is None:
            where = "live" if b is None else "after a rebuild"
            problems.append(f"pod {pod} is bound only {where}: {a or b}")
        elif a != b or (not a.external and not b.external and a.gpus != b.gpus):
            problems.append(f"pod {pod} is held as {a} live but as {b} after a rebuild")
    return problems


def _as_listed(pod: dict[str, Any], node: str) -> dict[str, Any]:
    """The pod as a list call would return it: bound pods carry ``spec.nodeName``. Copied
    only as deep as that change and :meth:`Planner.recover` reach (a pod may nest deeper
    than ``copy.deepcopy`` recurses)."""
    listed = dict(pod)
    listed["metadata"] = dict(pod["metadata"])
    if node:
        spec = pod.get("spec")
        listed["spec"] = {**(spec if isinstance(spec, dict) else {}), "nodeName": node}
    return listed
