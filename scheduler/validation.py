"""Gang specs that can never be placed on a cluster, whatever its state: caught before search so
that they get a :class:`~scheduler.gang.GangSpecError` naming the field, never a silent
"does not fit now"."""

from __future__ import annotations

import weakref

from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.topology.compiled import NO_PRODUCT, CompiledCluster

REMEMBERED_VALID = 256
"""Gangs remembered as valid (by identity) before the memo starts over."""
_valid: dict[int, tuple[weakref.ref[Gang], weakref.ref[CompiledCluster]]] = {}
"""``id(gang) -> (gang, cluster)`` it passed on, both held weakly so that a reused id never
matches: a :class:`Gang` is frozen, so a gang valid once on a cluster stays valid there."""


def validate_gang_for_cluster(gang: Gang, compiled: CompiledCluster) -> None:
    """Raise :class:`GangSpecError` for: :meth:`Gang.validate` errors, unknown level names,
    unknown GPU products, a member larger than every node it may use (GPUs, cpu, memory), and
    NVLink groups that are mixed, not whole-GPU, or larger than every NVLink domain.

    A gang that passed on this cluster already is not checked again: the planner validates
    the gang it builds, and every placement of it validates on entry."""
    if _passed(gang, compiled):
        return
    gang.validate()
    check_gang_on_cluster(gang, compiled)


def _passed(gang: Gang, compiled: CompiledCluster) -> bool:
    known = _valid.get(id(gang))
    return known is not None and known[0]() is gang and known[1]() is compiled


def check_gang_on_cluster(gang: Gang, compiled: CompiledCluster) -> None:
    """The cluster's part of :func:`validate_gang_for_cluster`, for a gang whose
    :meth:`Gang.validate` passed (the caller's own call, whose error it reports apart)."""
    where = f"gang {gang.name!r}"
    levels = compiled.level_names
    for field_name in ("required_level", "preferred_level"):
        value = getattr(gang, field_name)
        if value is not None and value not in levels:
            raise GangSpecError(
                f"{where}: {field_name} {value!r} is not a level of cluster "
                f"{compiled.cluster.name!r}; its levels are {', '.join(levels)}"
            )
    both = gang.required_level and gang.preferred_level
    if both and levels.index(gang.preferred_level) > levels.index(gang.required_level):
        raise GangSpecError(
            f"{where}: preferred_level {gang.preferred_level!r} is above required_level "
            f"{gang.required_level!r}"
        )
    checked: set[int] = set()
    for member in gang.members:
        if id(member.request) not in checked:
            checked.add(id(member.request))
            _check_request(member.request, where, member.name, compiled)
    if gang.nvlink_group:
        _check_nvlink_groups(gang, compiled)
    if len(_valid) >= REMEMBERED_VALID:
        _valid.clear()
    _valid[id(gang)] = (weakref.ref(gang), weakref.ref(compiled))


def _check_request(
    request: MemberRequest, gang_where: str, member: str, compiled: CompiledCluster
) -> None:
    """The request's GPU products exist and some node it may use is large enough; the text
    naming the member is built only for an error (this runs for every placement)."""
    products = compiled.products
    unknown = [p for p in request.gpu_products if p not in products]
    if unknown:
        known = ", ".join(products) or "none"
        raise GangSpecError(
            f"{gang_where} member {member!r}: unknown GPU product "
            f"{', '.join(map(repr, unknown))}; cluster {compiled.cluster.name!r} has {known}"
        )
    largest = cluster_index(compiled).largest_node
    if not request.gpu_milli_total:
        limits = [largest[NO_PRODUCT]]
    elif not products:
        raise GangSpecError(
            f"{gang_where} member {member!r}: asks for a GPU but cluster has no GPU node"
        )
    elif request.gpu_products:
        limits = [largest[products.index(p)] for p in request.gpu_products]
    else:
        limits = [largest[i] for i in range(len(products))]
    for pos, name, asked in (
        (0, "gpus", request.gpus),
        (1, "cpu_milli", request.cpu_milli),
        (2, "memory_mib", request.memory_mib),
    ):
        if not asked:  # never more than a node has: requests are not negative (validated)
            continue
        most = max(limit[pos] for limit in limits)
        if asked > most:
            raise GangSpecError(
                f"{gang_where} member {member!r}: asks for {name} {asked} but the largest "
                f"node it may use has {most}"
            )


def _check_nvlink_groups(gang: Gang, compiled: CompiledCluster) -> None:
    where = f"gang {gang.name!r}"
    size = gang.nvlink_group
    largest = cluster_index(compiled).max_nvlink_gpus
    for start in range(0, len(gang.members), size):
        group = gang.members[start : start + size]
        first = group[0].request
        if any(m.request != first for m in group[1:]):
            raise GangSpecError(
                f"{where}: NVLink group starting at member {group[0].name!r} mixes requests; "
                "the members of one nvlink_group must ask for the same resources"
            )
        if first.gpu_milli or not first.gpus:
            raise GangSpecError(
                f"{where}: nvlink_group needs members with whole GPUs; member "
                f"{group[0].name!r} asks for {first.gpus} GPUs and {first.gpu_milli} milli-GPU"
            )
        need = first.gpus * len(group)
        if need >= 2 and need > largest:
            raise GangSpecError(
                f"{where}: an NVLink group of {len(group)} member{'s' if len(group) > 1 else ''} "
                f"x {first.gpus} GPUs needs "
                f"{need} GPUs in one NVLink domain; the largest in cluster "
                f"{compiled.cluster.name!r} has {largest}"
            )
