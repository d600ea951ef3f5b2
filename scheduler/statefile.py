"""State files: allocations that already hold GPUs, applied to a fresh cluster state before a
what-if placement (``phalanx place --state``). The format is documented in
``docs/gang-spec.md``::

    {"allocations": [
        {"gang": "train-a", "members": [
            {"node": "h100-00000", "gpus": [0, 1, 2, 3]},
            {"member": "train-a-1", "node": "h100-00001", "gpus": [5], "gpu_milli": 500,
             "cpu_milli": 8000, "memory_mib": 65536}]}]}
"""

from __future__ import annotations

from pathlib import Path

from phalanx.scheduler.cost import lowest_common_domain
from phalanx.scheduler.gangspec import file_problems
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState, LedgerError
from phalanx.topology.compiled import CapacityError
from phalanx.topology.fields import Problems, Reader, join
from phalanx.topology.model import MILLI_PER_GPU

STATE_FIELDS = ("allocations",)
ALLOCATION_FIELDS = ("gang", "members")
MEMBER_FIELDS = ("member", "node", "gpus", "gpu_milli", "cpu_milli", "memory_mib")


class StateFileError(ValueError):
    """A state file that cannot be applied; the message names the file and field."""


def load_state_file(path: str | Path, state: ClusterState, now_s: float = 0.0) -> int:
    """Apply the allocations of a ``.json``/YAML state file to ``state`` (as committed
    holdings); returns how many gangs were applied. Nothing is applied if any is bad."""
    from phalanx.topology.clusterfile import ClusterFileError, read_document_file

    try:
        parsed = read_document_file(path)
    except ClusterFileError as exc:
        raise StateFileError(file_problems(exc.source, exc.problems)) from None
    return apply_state(parsed.doc, state, parsed.source, now_s)


def apply_state(
    doc: object, state: ClusterState, source: str = "<state>", now_s: float = 0.0
) -> int:
    """Apply a parsed state document to ``state``; all or nothing."""
    problems = Problems()
    placements = _parse(doc, state, problems)
    if problems:
        raise StateFileError(f"{source}: " + "; ".join(str(p) for p in problems.items))
    trial = state.copy()
    for pos, placement in enumerate(placements):
        try:
            trial.assign(placement, now_s)
        except (CapacityError, LedgerError) as exc:
            raise StateFileError(
                f"{source}: allocations[{pos}] (gang {placement.gang!r}): {exc}"
            ) from None
    for placement in placements:
        state.assign(placement, now_s)
    return len(placements)


def _parse(doc: object, state: ClusterState, problems: Problems) -> list[Placement]:
    r = Reader.of(doc, "", problems)
    if r is None:
        return []
    r.allow_only(STATE_FIELDS)
    compiled = state.compiled
    placements = []
    for i, entry in enumerate(r.items("allocations") or []):
        a = Reader.of(entry, join("allocations", i), problems)
        if a is None:
            continue
        a.allow_only(ALLOCATION_FIELDS)
        gang = a.string("gang")
        members: list[MemberPlacement] = []
        entries = a.items("members")
        for j, raw in enumerate(entries or []):
            m = Reader.of(raw, join(a.at("members"), j), problems)
            if m is None or gang is None:
                continue
            m.allow_only(MEMBER_FIELDS)
            node = m.string("node")
            gpus = m.items("gpus", default=[])
            milli = m.integer("gpu_milli", MILLI_PER_GPU, minimum=1)
            cpu = m.integer("cpu_milli", 0, minimum=0)
            memory = m.integer("memory_mib", 0, minimum=0)
            name = m.string("member", f"{gang}-{j}")
            if node is not None and node not in compiled.node_index:
                problems.add(m.at("node"), f"no node named {node!r} in the cluster")
                continue
            if gpus is None or not all(
                isinstance(g, int) and not isinstance(g, bool) for g in gpus
            ):
                problems.add(m.at("gpus"), "must be a list of GPU indices")
                continue
            if None in (node, milli, cpu, memory, name):
                continue
            members.append(
                MemberPlacement(
                    name, node, compiled.node_index[node], tuple(gpus), milli, cpu, memory, rank=j
                )
            )
        if gang is not None and entries == []:
            problems.add(a.at("members"), "must list at least one member")
        if gang is None or not members:
            continue
        level, domain = lowest_common_domain(compiled, [m.node_index for m in members])
        placements.append(
            Placement(
                gang,
                tuple(members),
                compiled.level_names[level],
                compiled.domain_names[domain],
                CostBreakdown(),
                solver="state-file",
            )
        )
    return placements
