"""Node pools of cluster files: each pool's count, node preset or shape, name pattern, domains,
labels and taints, and the nodes made from them with their domains."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from phalanx.topology.clusterfile_nodes import preset_maker, shape_maker
from phalanx.topology.costs import LinkCosts
from phalanx.topology.fields import Problems, Reader, join
from phalanx.topology.model import FabricLevel, Node
from phalanx.topology.name_patterns import NamePattern, PatternError
from phalanx.topology.presets import NODE_PRESETS, NodePreset, node_preset

DEFAULT_NODE_NAME = "{pool}-{index:04d}"
MAX_POOL_NODES = 100_000
"""Guards against a typo such as ``count: 1000000000`` exhausting memory."""


@dataclass
class Pool:
    """A node pool as read from the file, before its nodes are made."""

    path: str
    name: str
    count: int
    make: Callable[[str], Node]
    preset: NodePreset | None
    has_multi_node_nvlink: bool
    node_name: NamePattern
    domains: dict[str, tuple[str, NamePattern | list[str]]]
    """Level -> (location in the file, pattern or one name per node)."""
    labels: dict[str, str]
    taints: tuple[str, ...]


def read_pools(root: Reader) -> list[Pool] | None:
    raw = root.items("node_pools")
    if raw is None:
        return None
    if not raw:
        root.problems.add("node_pools", "must list at least one pool")
        return None
    pools = []
    seen: dict[str, str] = {}
    for i, item in enumerate(raw):
        path = join("node_pools", i)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str) and name in seen:
            root.problems.add(
                join(path, "name"), f"pool name {name!r} is already used by {seen[name]}"
            )
        elif isinstance(name, str):
            seen[name] = path
        pool = read_pool(Reader.of(item, path, root.problems))
        if pool is not None:
            pools.append(pool)
    return pools


def read_pool(r: Reader | None) -> Pool | None:
    if r is None:
        return None
    r.allow_only(("name", "count", "preset", "node", "node_name", "domains", "labels", "taints"))
    name = r.string("name")
    count = r.integer("count", minimum=1)
    if count is not None and count > MAX_POOL_NODES:
        r.problems.add(r.at("count"), f"at most {MAX_POOL_NODES} nodes per pool, got {count}")
        count = None
    node_name = read_pattern(r, "node_name", DEFAULT_NODE_NAME)
    preset_name = r.string("preset", default=None)
    shape = r.mapping("node", default=None)
    preset: NodePreset | None = None
    make: Callable[[str], Node] | None = None
    multi_node_nvlink = False
    if preset_name is not None:
        try:
            preset = node_preset(preset_name)
        except KeyError:
            known = ", ".join(sorted(NODE_PRESETS))
            r.problems.add(r.at("preset"), f"unknown node preset {preset_name!r}; known: {known}")
        if preset is not None:
            make = preset_maker(preset, shape)
            multi_node_nvlink = preset.nvlink_domain_nodes > 1
    elif shape is not None:
        make, multi_node_nvlink = shape_maker(shape)
    elif not r.has("preset"):
        r.problems.add(r.path, "give a node 'preset' or a 'node' shape")
    domains = read_domains(r, count)
    labels = r.string_map("labels")
    taints = r.string_list("taints")
    if name is None or count is None or make is None or node_name is None:
        return None
    return Pool(
        r.path, name, count, make, preset, multi_node_nvlink, node_name, domains, labels, taints
    )


def read_pattern(r: Reader, key: str, default: str) -> NamePattern | None:
    text = r.string(key, default=default)
    if text is None:
        return None
    try:
        return NamePattern.parse(text)
    except PatternError as exc:
        r.problems.add(r.at(key), str(exc))
        return None


def read_domains(r: Reader, count: int | None) -> dict[str, tuple[str, NamePattern | list[str]]]:
    domains = r.mapping("domains", default=None)
    out: dict[str, tuple[str, NamePattern | list[str]]] = {}
    if domains is None:
        return out
    for level in domains.data:
        where = domains.at(str(level))
        value = domains.data[level]
        if isinstance(value, list):
            if not all(isinstance(v, str) and v for v in value):
                r.problems.add(where, "a list of domains must hold non-empty strings")
            elif count is not None and len(value) != count:
                r.problems.add(where, f"lists {len(value)} domains for a pool of {count} nodes")
            else:
                out[str(level)] = (where, value)
            continue
        pattern = read_pattern(domains, str(level), "")
        if pattern is not None:
            out[str(level)] = (where, pattern)
    return out


def build_nodes(problems: Problems, pools: list[Pool], costs: LinkCosts) -> list[Node]:
    """Every pool's nodes, named by its pattern; stops at the first name that repeats."""
    nodes: list[Node] = []
    first_seen: dict[str, str] = {}
    for pool in pools:
        for index in range(pool.count):
            name = pool.node_name.render(index, len(nodes), pool.name)
            if name in first_seen:
                problems.add(
                    join(pool.path, "node_name"),
                    f"node name {name!r} repeats (first made by {first_seen[name]})",
                )
                return nodes
            first_seen[name] = pool.path
            node = pool.make(name)
            nodes.append(
                dataclasses.replace(
                    node,
                    domains={},
                    labels={**node.labels, **pool.labels},
                    taints=pool.taints,
                    costs=costs,
                )
            )
    return nodes


def assign_pool_domains(pools: list[Pool], nodes: list[Node]) -> None:
    start = 0
    for pool in pools:
        for level, (_, spec) in pool.domains.items():
            for index in range(pool.count):
                node = nodes[start + index]
                node.domains[level] = (
                    spec[index]
                    if isinstance(spec, list)
                    else spec.render(index, start + index, pool.name)
                )
        start += pool.count


def check_domains(
    problems: Problems, pools: list[Pool], nodes: list[Node], levels: list[FabricLevel]
) -> None:
    start = 0
    for pool in pools:
        missing = sorted(
            {
                lvl.name
                for node in nodes[start : start + pool.count]
                for lvl in levels
                if not node.domains.get(lvl.name)
            }
        )
        if missing:
            problems.add(
                join(pool.path, "domains"),
                f"no domain for level(s) {', '.join(missing)}",
            )
        start += pool.count
