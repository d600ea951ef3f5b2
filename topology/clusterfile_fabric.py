"""Fabric levels of cluster files: a ``rail-fat-tree`` preset, whose levels need the nodes, or
explicit levels; then the checks that every named level exists and that costs rise level by
level."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from phalanx.topology.clusterfile_pools import Pool
from phalanx.topology.costs import DEFAULT_HOP_LATENCY_US, NVLINK_HOP_LATENCY_US, cost_from_gbps
from phalanx.topology.fields import Problems, Reader, join
from phalanx.topology.model import NODE_LEVEL, FabricLevel, Node, level_cost_is_monotone
from phalanx.topology.presets import SUS_PER_POD, rail_fat_tree

FABRIC_PRESETS = ("rail-fat-tree",)


class PresetFabric(NamedTuple):
    """A ``rail-fat-tree`` fabric's settings, in :func:`rail_fat_tree`'s argument order."""

    su_nodes: int
    oversubscription: float
    nvlink_domain_nodes: int
    sus_per_pod: int


def fabric_levels(
    problems: Problems, fabric: Reader | None, preset: PresetFabric | None, nodes: list[Node]
) -> list[FabricLevel] | None:
    """Levels of a preset fabric (or none at all), which need the nodes to assign."""
    if fabric is None:
        if len(nodes) > 1:
            problems.add("fabric", "is required for a cluster of more than one node")
            return None
        return []
    if preset is None:
        return None
    try:
        return rail_fat_tree(nodes, *preset)
    except ValueError as exc:
        fabric.problems.add(fabric.path, str(exc))
        return None


def read_preset_fabric(f: Reader, pools: list[Pool], pools_complete: bool) -> PresetFabric | None:
    """The settings of a ``rail-fat-tree`` fabric; ``pools_complete`` says every pool was
    read, so a default taken from the pools' presets is trustworthy."""
    f.allow_only(("preset", "su_nodes", "oversubscription", "nvlink_domain_nodes", "sus_per_pod"))
    f.choice("preset", FABRIC_PRESETS)
    presets = [p.preset for p in pools]
    su_defaults = {p.su_nodes for p in presets if p is not None}
    su_default = su_defaults.pop() if len(su_defaults) == 1 else None
    if su_default is None and not f.has("su_nodes") and pools_complete:
        f.problems.add(
            f.at("su_nodes"),
            "is required: the pools' node presets do not agree on a scalable-unit size",
        )
    su_nodes = f.integer("su_nodes", default=su_default, minimum=1)
    oversubscription = f.number("oversubscription", default=1.0, minimum=1.0)
    nvl_defaults = {p.nvlink_domain_nodes for p in presets if p is not None}
    nvl_default = nvl_defaults.pop() if len(nvl_defaults) == 1 and None not in presets else 1
    nvl_nodes = f.integer("nvlink_domain_nodes", default=nvl_default, minimum=1)
    sus_per_pod = f.integer("sus_per_pod", default=SUS_PER_POD, minimum=1)
    if nvl_nodes is not None and nvl_nodes > 1:
        for pool in pools:
            if not pool.has_multi_node_nvlink:
                f.problems.add(
                    f.at("nvlink_domain_nodes"),
                    f"pool {pool.name!r} has no multi-node NVLink; describe a mixed "
                    "cluster with explicit 'levels' instead",
                )
    if None in (su_nodes, oversubscription, nvl_nodes, sus_per_pod) or f.problems:
        return None
    return PresetFabric(su_nodes, oversubscription, nvl_nodes, sus_per_pod)


def read_explicit_levels(f: Reader) -> list[FabricLevel] | None:
    f.allow_only(("levels",))
    raw = f.items("levels")
    if raw is None:
        return None
    levels: list[FabricLevel] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        lr = Reader.of(item, join(f.at("levels"), i), f.problems)
        if lr is None:
            continue
        level = read_level(lr)
        if level is None:
            continue
        if level.name in names or level.name == NODE_LEVEL:
            lr.problems.add(lr.at("name"), f"level name {level.name!r} is taken")
        names.add(level.name)
        levels.append(level)
    if len(levels) != len(raw):
        return None
    return levels


def check_level_names(
    problems: Problems,
    pools: list[Pool],
    level_costs: dict[str, tuple[str, float]],
    levels: list[FabricLevel],
) -> None:
    """Every level named by a pool's domains or by ``costs.levels`` must exist."""
    known = [lvl.name for lvl in levels]
    named = [(where, name) for name, (where, _) in level_costs.items()]
    named += [(where, name) for pool in pools for name, (where, _) in pool.domains.items()]
    for where, name in named:
        if name not in known:
            problems.add(where, f"no fabric level named {name!r}; levels are {', '.join(known)}")


def with_level_costs(
    problems: Problems, levels: list[FabricLevel], overrides: dict[str, tuple[str, float]]
) -> list[FabricLevel]:
    """Apply ``costs.levels`` and check that costs still rise level by level."""
    levels = [
        dataclasses.replace(lvl, cost=overrides[lvl.name][1]) if lvl.name in overrides else lvl
        for lvl in levels
    ]
    if not level_cost_is_monotone(levels):
        costs = ", ".join(
            f"{lvl.name}={lvl.cost:g}{' (nvlink)' if lvl.nvlink else ''}" for lvl in levels
        )
        problems.add(
            "fabric",
            "level costs must not fall from one level to the next, and NVLink levels "
            f"come first: {costs}",
        )
    return levels


def read_level(r: Reader) -> FabricLevel | None:
    r.allow_only(
        (
            "name",
            "cost",
            "gbps_per_gpu",
            "oversubscription",
            "hop_latency_us",
            "nvlink",
            "label",
        )
    )
    name = r.string("name")
    nvlink = r.boolean("nvlink", default=False)
    oversubscription = r.number("oversubscription", default=1.0, minimum=1.0)
    default_latency = NVLINK_HOP_LATENCY_US if nvlink else DEFAULT_HOP_LATENCY_US
    latency = r.number("hop_latency_us", default=default_latency, minimum=0.0)
    label = r.string("label", default="", non_empty=False)
    cost = r.number("cost", default=None, positive=True)
    gbps = r.number("gbps_per_gpu", default=None, positive=True)
    if r.has("cost") == r.has("gbps_per_gpu"):
        r.problems.add(r.path, "give exactly one of 'cost' and 'gbps_per_gpu'")
        return None
    if cost is None and gbps is not None and oversubscription is not None:
        cost = cost_from_gbps(gbps, oversubscription)
    if None in (name, nvlink, oversubscription, latency, label, cost):
        return None
    return FabricLevel(name, cost, latency, oversubscription, nvlink, label)
