"""Cluster files: a YAML or JSON description of node pools and fabric levels -> :class:`Cluster`.

The schema is documented in ``docs/cluster-file.md``. Loading validates the whole file and
raises one :class:`ClusterFileError` listing every problem with its location
(``file:line: node_pools[1].count: must be at least 1``), so a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from phalanx.topology.costs import (
    DEFAULT_HOP_LATENCY_US,
    NVLINK_HOP_LATENCY_US,
    LinkCosts,
    cost_from_gbps,
    nic_gbps_to_gbytes,
)
from phalanx.topology.field_lines import DocumentShapeError, field_lines
from phalanx.topology.fields import Problems, Reader, join
from phalanx.topology.model import (
    MAX_GPUS_PER_NODE,
    NODE_LEVEL,
    Cluster,
    FabricLevel,
    Gpu,
    Nic,
    Node,
    NvlinkKind,
    level_cost_is_monotone,
)
from phalanx.topology.presets import (
    NODE_PRESETS,
    SUS_PER_POD,
    NodePreset,
    node_preset,
    rail_fat_tree,
)

FABRIC_PRESETS = ("rail-fat-tree",)
DEFAULT_NODE_NAME = "{pool}-{index:04d}"
MAX_POOL_NODES = 100_000
"""Guards against a typo such as ``count: 1000000000`` exhausting memory."""
NVSWITCH_GENERATIONS = (3, 4, 5)
PCIE_GENERATIONS = (4, 5)
DEFAULT_BRIDGE_GROUP_GPUS = 2
PRESET_OVERRIDES = ("cpu_milli", "memory_mib", "network_gbps_per_gpu", "gpu_memory_mib")
"""Fields of ``node`` that may adjust a preset node; anything else needs a full shape."""
LINK_COST_FIELDS = tuple(f.name for f in dataclasses.fields(LinkCosts))
FACTOR_FIELDS = ("host_bridge_factor", "no_p2p_factor")
"""Multipliers, which must not make a link cheaper."""


@dataclass(frozen=True)
class ProblemEntry:
    """One problem, structured for machine-readable output (``topology validate --json``):
    its line (``None`` when unknown), field path (``""`` for the whole file) and message."""

    line: int | None
    field: str
    message: str


class ClusterFileError(ValueError):
    """A cluster file that cannot be used; ``problems`` lists every one with its location,
    ``entries`` the same problems as :class:`ProblemEntry` records."""

    def __init__(
        self, source: str, problems: list[str], entries: list[ProblemEntry] | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        self.entries = (
            entries if entries is not None else [ProblemEntry(None, "", p) for p in problems]
        )
        super().__init__(
            _named(source, problems[0])
            if len(problems) == 1  # one problem, one line
            else f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)
        )


def _named(source: str, problem: str) -> str:
    return problem if problem.startswith(source) else f"{source}: {problem}"


# ---------------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class DocumentFile:
    """A parsed YAML/JSON file and where each of its fields sits."""

    source: str
    stem: str
    doc: Any
    lines: dict[str, int]
    duplicate_keys: list[str]


def read_document_file(path: str | Path) -> DocumentFile:
    """Parse a ``.json`` file as JSON and anything else as YAML, keeping field line numbers."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterFileError(source, [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise _unreadable(source, None, message) from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        doc = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
        lines, duplicates = _yaml_positions(text)
    except json.JSONDecodeError as exc:
        raise _unreadable(source, exc.lineno, f"invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # one line
        line = mark.line + 1 if mark else None
        raise _unreadable(source, line, f"invalid YAML: {problem}") from None
    except DocumentShapeError as exc:
        raise _unreadable(source, exc.line, str(exc)) from None
    except RecursionError:
        raise _unreadable(source, None, f"nested too deeply to read as {kind}") from None
    except ValueError as exc:  # a number too long to convert, a date that does not exist
        raise _unreadable(source, None, f"invalid {kind}: {exc}") from None
    return DocumentFile(source, path.stem, doc, lines, duplicates)


def _unreadable(source: str, line: int | None, message: str) -> ClusterFileError:
    where = f"{source}:{line}" if line else source
    return ClusterFileError(source, [f"{where}: {message}"], [ProblemEntry(line, "", message)])


def load_cluster_file(path: str | Path) -> Cluster:
    """Read and validate a ``.yaml``/``.yml``/``.json`` cluster file."""
    parsed = read_document_file(path)
    return cluster_from_document(
        parsed.doc,
        source=parsed.source,
        default_name=parsed.stem,
        lines=parsed.lines,
        duplicate_keys=parsed.duplicate_keys,
    )


def cluster_from_document(
    doc: object,
    source: str = "<document>",
    default_name: str = "cluster",
    lines: Mapping[str, int] | None = None,
    duplicate_keys: list[str] | None = None,
) -> Cluster:
    """Build a cluster from an already parsed document (a dict), validating all of it."""
    problems = Problems()
    for path in duplicate_keys or ():
        problems.add(path, "is given twice")
    cluster = _ClusterFileParser(problems, default_name).parse(doc)
    if problems or cluster is None:
        where = dict(lines or {})
        located = [(_line_of(where, p.path), p) for p in problems.items]
        located.sort(key=lambda item: item[0] or 0)
        formatted = [f"{source}:{line}: {p}" if line else f"{source}: {p}" for line, p in located]
        entries = [ProblemEntry(line, p.path, p.message) for line, p in located]
        raise ClusterFileError(source, formatted, entries)
    return cluster


# ---------------------------------------------------------------------------- name patterns
_FIELD = re.compile(r"\{([^{}]*)\}")
_EXPRESSION = re.compile(r"^\s*([a-z_]+)\s*((?:(?://|[%*+-])\s*\d+\s*)*)(?::([^{}]*))?$")
_OPERATION = re.compile(r"(//|[%*+-])\s*(\d+)")
PATTERN_VARIABLES = ("index", "node", "pool")
"""``index``: position in the pool; ``node``: position in the cluster; ``pool``: pool name."""
_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "*": lambda a, b: a * b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
}


class PatternError(ValueError):
    """A malformed name pattern such as ``su{index//}``."""


@dataclass(frozen=True)
class NamePattern:
    """A node or domain name such as ``su{index//32}`` or ``{pool}-{index:03d}``: literal text
    with ``{variable[op int]...[:format]}`` fields, evaluated left to right."""

    parts: tuple[str | tuple[str, tuple[tuple[str, int], ...], str], ...]

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        parts: list[str | tuple[str, tuple[tuple[str, int], ...], str]] = []
        pos = 0
        for match in _FIELD.finditer(text):
            parts.append(_literal(text[pos : match.start()]))
            parts.append(_field(match.group(1)))
            pos = match.end()
        parts.append(_literal(text[pos:]))
        return cls(tuple(p for p in parts if p != ""))

    def render(self, index: int, node: int, pool: str) -> str:
        values: dict[str, int | str] = {"index": index, "node": node, "pool": pool}
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            variable, operations, spec = part
            value = values[variable]
            for op, operand in operations:
                value = _OPERATIONS[op](value, operand)  # type: ignore[arg-type]
            out.append(format(value, spec))
        return "".join(out)


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise PatternError(f"unbalanced brace in {text!r}")
    return text


def _field(body: str) -> tuple[str, tuple[tuple[str, int], ...], str]:
    match = _EXPRESSION.match(body)
    if not match:
        raise PatternError(
            f"cannot read field {{{body}}}; write {{index}}, {{index//32}}, {{node%4}} "
            "or {pool}, optionally with a format such as {index:03d}"
        )
    variable, ops_text, spec = match.group(1), match.group(2), match.group(3) or ""
    if variable not in PATTERN_VARIABLES:
        raise PatternError(
            f"unknown variable {variable!r}; expected one of {', '.join(PATTERN_VARIABLES)}"
        )
    operations = tuple((op, int(n)) for op, n in _OPERATION.findall(ops_text))
    if variable == "pool" and operations:
        raise PatternError("arithmetic applies to index and node, not to pool")
    if any(op in ("//", "%") and n == 0 for op, n in operations):
        raise PatternError("division by zero")
    sample: int | str = "pool" if variable == "pool" else 0
    try:
        format(sample, spec)
    except ValueError as exc:
        raise PatternError(f"bad format {spec!r}: {exc}") from None
    return variable, operations, spec


# ---------------------------------------------------------------------------- the parser
@dataclass
class _Pool:
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


class _PresetFabric(NamedTuple):
    """A ``rail-fat-tree`` fabric's settings, in :func:`rail_fat_tree`'s argument order."""

    su_nodes: int
    oversubscription: float
    nvlink_domain_nodes: int
    sus_per_pod: int


class _ClusterFileParser:
    def __init__(self, problems: Problems, default_name: str) -> None:
        self.problems = problems
        self.default_name = default_name

    def parse(self, doc: object) -> Cluster | None:
        root = Reader.of(doc, "", self.problems)
        if root is None:
            return None
        root.allow_only(("name", "costs", "fabric", "node_pools"))
        name = root.string("name", default=self.default_name)
        link_costs, level_costs = self._costs(root.mapping("costs", default=None))
        fabric = root.mapping("fabric", default=None)
        explicit = None
        if fabric is not None and not fabric.has("preset"):
            explicit = self._explicit_levels(fabric)
        before_pools = len(self.problems)
        pools = self._pools(root)
        pools_complete = pools is not None and len(self.problems) == before_pools
        if explicit is not None:
            self._check_level_names(pools or [], level_costs, explicit)
            explicit = self._with_costs(explicit, level_costs)
        # a preset fabric's own fields are checked now, so their problems are reported with
        # the pools' (the levels themselves need the nodes, built below)
        preset_fabric = None
        if fabric is not None and fabric.has("preset"):
            preset_fabric = self._preset_fabric(fabric, pools or [], pools_complete)
        if self.problems or pools is None:
            return None
        nodes = self._nodes(pools, link_costs)
        if self.problems:
            return None
        if explicit is None:
            levels = self._fabric(fabric, preset_fabric, nodes)
            if levels is None:
                return None
            self._check_level_names(pools, level_costs, levels)
            levels = self._with_costs(levels, level_costs)
        else:
            levels = explicit
        if self.problems:
            return None
        self._assign_pool_domains(pools, nodes)
        self._check_domains(pools, nodes, levels)
        if self.problems:
            return None
        try:
            return Cluster(name or self.default_name, nodes, levels)
        except ValueError as exc:
            self.problems.add("fabric", str(exc))
            return None

    # ------------------------------------------------------------------ costs
    def _costs(self, costs: Reader | None) -> tuple[LinkCosts, dict[str, tuple[str, float]]]:
        if costs is None:
            return LinkCosts(), {}
        costs.allow_only((*LINK_COST_FIELDS, "levels"))
        overrides: dict[str, float] = {}
        for key in LINK_COST_FIELDS:
            minimum = 1.0 if key in FACTOR_FIELDS else None
            value = costs.number(key, default=None, positive=True, minimum=minimum)
            if value is not None:
                overrides[key] = value
        level_costs: dict[str, tuple[str, float]] = {}
        levels = costs.mapping("levels", default=None)
        if levels is not None:
            for key in levels.data:
                value = levels.number(str(key), positive=True)
                if value is not None:
                    level_costs[str(key)] = (levels.at(str(key)), value)
        return LinkCosts(**overrides), level_costs

    # ------------------------------------------------------------------ pools
    def _pools(self, root: Reader) -> list[_Pool] | None:
        raw = root.items("node_pools")
        if raw is None:
            return None
        if not raw:
            self.problems.add("node_pools", "must list at least one pool")
            return None
        pools = []
        seen: dict[str, str] = {}
        for i, item in enumerate(raw):
            path = join("node_pools", i)
            name = item.get("name") if isinstance(item, Mapping) else None
            if isinstance(name, str) and name in seen:
                self.problems.add(
                    join(path, "name"), f"pool name {name!r} is already used by {seen[name]}"
                )
            elif isinstance(name, str):
                seen[name] = path
            pool = self._pool(Reader.of(item, path, self.problems))
            if pool is not None:
                pools.append(pool)
        return pools

    def _pool(self, r: Reader | None) -> _Pool | None:
        if r is None:
            return None
        r.allow_only(
            ("name", "count", "preset", "node", "node_name", "domains", "labels", "taints")
        )
        name = r.string("name")
        count = r.integer("count", minimum=1)
        if count is not None and count > MAX_POOL_NODES:
            r.problems.add(r.at("count"), f"at most {MAX_POOL_NODES} nodes per pool, got {count}")
            count = None
        node_name = self._pattern(r, "node_name", DEFAULT_NODE_NAME)
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
                r.problems.add(
                    r.at("preset"), f"unknown node preset {preset_name!r}; known: {known}"
                )
            if preset is not None:
                make = self._preset_maker(preset, shape)
                multi_node_nvlink = preset.nvlink_domain_nodes > 1
        elif shape is not None:
            make, multi_node_nvlink = self._shape_maker(shape)
        elif not r.has("preset"):
            r.problems.add(r.path, "give a node 'preset' or a 'node' shape")
        domains = self._domains(r, count)
        labels = r.string_map("labels")
        taints = r.string_list("taints")
        if name is None or count is None or make is None or node_name is None:
            return None
        return _Pool(
            r.path, name, count, make, preset, multi_node_nvlink, node_name, domains, labels, taints
        )

    def _pattern(self, r: Reader, key: str, default: str) -> NamePattern | None:
        text = r.string(key, default=default)
        if text is None:
            return None
        try:
            return NamePattern.parse(text)
        except PatternError as exc:
            r.problems.add(r.at(key), str(exc))
            return None

    def _domains(
        self, r: Reader, count: int | None
    ) -> dict[str, tuple[str, NamePattern | list[str]]]:
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
            pattern = self._pattern(domains, str(level), "")
            if pattern is not None:
                out[str(level)] = (where, pattern)
        return out

    def _preset_maker(self, preset: NodePreset, shape: Reader | None) -> Callable[[str], Node]:
        if shape is None:
            return preset.make
        shape.allow_only(PRESET_OVERRIDES)
        cpu = shape.integer("cpu_milli", default=None, minimum=0)
        memory = shape.integer("memory_mib", default=None, minimum=0)
        network = shape.number("network_gbps_per_gpu", default=None, positive=True)
        gpu_memory = shape.integer("gpu_memory_mib", default=None, minimum=1)

        def make(name: str) -> Node:
            node = preset.make(name)
            changes: dict[str, Any] = {}
            if cpu is not None:
                changes["cpu_milli"] = cpu
            if memory is not None:
                changes["memory_mib"] = memory
            if network is not None:
                changes["network_gbps_per_gpu"] = network
            if gpu_memory is not None:
                changes["gpus"] = tuple(
                    dataclasses.replace(g, memory_mib=gpu_memory) for g in node.gpus
                )
            return dataclasses.replace(node, **changes) if changes else node

        return make

    def _shape_maker(self, s: Reader) -> tuple[Callable[[str], Node] | None, bool]:
        """An explicit node shape; returns its factory and whether it is NVSwitch-connected."""
        s.allow_only(
            (
                "gpus",
                "product",
                "gpu_memory_mib",
                "nvlink",
                "pcie",
                "numa_nodes",
                "nics",
                "network_gbps_per_gpu",
                "cpu_milli",
                "memory_mib",
            )
        )
        n_gpus = s.integer("gpus", minimum=0)
        if n_gpus is not None and n_gpus > MAX_GPUS_PER_NODE:
            s.problems.add(s.at("gpus"), f"at most {MAX_GPUS_PER_NODE} GPUs per node")
            n_gpus = None
        has_gpus = bool(n_gpus)
        product = s.string("product") if has_gpus else s.string("product", default="")
        gpu_memory = (
            s.integer("gpu_memory_mib", minimum=1)
            if has_gpus
            else s.integer("gpu_memory_mib", default=0)
        )
        cpu = s.integer("cpu_milli", minimum=0)
        memory = s.integer("memory_mib", minimum=0)
        numa_nodes = s.integer("numa_nodes", default=1, minimum=1)

        kind, generation, group = NvlinkKind.NONE, 4, 1
        nvlink = s.mapping("nvlink", default=None)
        if nvlink is not None:
            nvlink.allow_only(("kind", "generation", "group_gpus"))
            kind_text = nvlink.choice("kind", [k.value for k in NvlinkKind])
            kind = NvlinkKind(kind_text) if kind_text else NvlinkKind.NONE
            if kind is NvlinkKind.NVSWITCH:
                generation = nvlink.integer("generation")
                if generation is not None and generation not in NVSWITCH_GENERATIONS:
                    nvlink.problems.add(
                        nvlink.at("generation"),
                        f"must be one of {NVSWITCH_GENERATIONS}, got {generation}",
                    )
                    generation = None
            if kind is NvlinkKind.BRIDGE:
                group = nvlink.integer("group_gpus", default=DEFAULT_BRIDGE_GROUP_GPUS, minimum=2)

        pcie_generation, gpus_per_switch, p2p = 5, 1, True
        pcie = s.mapping("pcie", default=None)
        if pcie is not None:
            pcie.allow_only(("generation", "gpus_per_switch", "p2p"))
            pcie_generation = pcie.integer("generation", default=5)
            if pcie_generation is not None and pcie_generation not in PCIE_GENERATIONS:
                pcie.problems.add(
                    pcie.at("generation"),
                    f"must be one of {PCIE_GENERATIONS}, got {pcie_generation}",
                )
                pcie_generation = None
            gpus_per_switch = pcie.integer("gpus_per_switch", default=1, minimum=1)
            p2p = pcie.boolean("p2p", default=True)

        nic_count, nic_gbit_s = 0, 0.0
        nics = s.mapping("nics", default=None)
        if nics is not None:
            nics.allow_only(("count", "gbit_s"))
            nic_count = nics.integer("count", minimum=1)
            nic_gbit_s = nics.number("gbit_s", positive=True)
        network = s.number("network_gbps_per_gpu", default=None, positive=True)
        if network is None and nics is None and not s.has("network_gbps_per_gpu") and has_gpus:
            s.problems.add(s.path, "give 'nics' or 'network_gbps_per_gpu' (scale-out bandwidth)")

        values = (
            n_gpus, product, gpu_memory, cpu, memory, numa_nodes, generation, group,
            pcie_generation, gpus_per_switch, p2p, nic_count, nic_gbit_s,
        )  # fmt: skip
        if any(v is None for v in values) or (network is None and has_gpus and nics is None):
            return None, False
        if network is None and has_gpus:
            network = nic_gbps_to_gbytes(nic_count * nic_gbit_s) / n_gpus
        shape = _Shape(
            n_gpus, product, gpu_memory, cpu, memory, numa_nodes, kind, generation, group,
            pcie_generation, gpus_per_switch, p2p, nic_count, nic_gbit_s, network,
        )  # fmt: skip
        return shape.make, kind is NvlinkKind.NVSWITCH

    # ------------------------------------------------------------------ nodes and fabric
    def _nodes(self, pools: list[_Pool], costs: LinkCosts) -> list[Node]:
        nodes: list[Node] = []
        first_seen: dict[str, str] = {}
        for pool in pools:
            for index in range(pool.count):
                name = pool.node_name.render(index, len(nodes), pool.name)
                if name in first_seen:
                    self.problems.add(
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

    def _fabric(
        self, fabric: Reader | None, preset: _PresetFabric | None, nodes: list[Node]
    ) -> list[FabricLevel] | None:
        """Levels of a preset fabric (or none at all), which need the nodes to assign."""
        if fabric is None:
            if len(nodes) > 1:
                self.problems.add("fabric", "is required for a cluster of more than one node")
                return None
            return []
        if preset is None:
            return None
        try:
            return rail_fat_tree(nodes, *preset)
        except ValueError as exc:
            fabric.problems.add(fabric.path, str(exc))
            return None

    def _preset_fabric(
        self, f: Reader, pools: list[_Pool], pools_complete: bool
    ) -> _PresetFabric | None:
        """The settings of a ``rail-fat-tree`` fabric; ``pools_complete`` says every pool was
        read, so a default taken from the pools' presets is trustworthy."""
        f.allow_only(
            ("preset", "su_nodes", "oversubscription", "nvlink_domain_nodes", "sus_per_pod")
        )
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
        return _PresetFabric(su_nodes, oversubscription, nvl_nodes, sus_per_pod)

    def _explicit_levels(self, f: Reader) -> list[FabricLevel] | None:
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
            level = self._level(lr)
            if level is None:
                continue
            if level.name in names or level.name == NODE_LEVEL:
                lr.problems.add(lr.at("name"), f"level name {level.name!r} is taken")
            names.add(level.name)
            levels.append(level)
        if len(levels) != len(raw):
            return None
        return levels

    def _check_level_names(
        self,
        pools: list[_Pool],
        level_costs: dict[str, tuple[str, float]],
        levels: list[FabricLevel],
    ) -> None:
        """Every level named by a pool's domains or by ``costs.levels`` must exist."""
        known = [lvl.name for lvl in levels]
        named = [(where, name) for name, (where, _) in level_costs.items()]
        named += [(where, name) for pool in pools for name, (where, _) in pool.domains.items()]
        for where, name in named:
            if name not in known:
                self.problems.add(
                    where, f"no fabric level named {name!r}; levels are {', '.join(known)}"
                )

    def _with_costs(
        self, levels: list[FabricLevel], overrides: dict[str, tuple[str, float]]
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
            self.problems.add(
                "fabric",
                "level costs must not fall from one level to the next, and NVLink levels "
                f"come first: {costs}",
            )
        return levels

    def _level(self, r: Reader) -> FabricLevel | None:
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

    def _assign_pool_domains(self, pools: list[_Pool], nodes: list[Node]) -> None:
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

    def _check_domains(
        self, pools: list[_Pool], nodes: list[Node], levels: list[FabricLevel]
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
                self.problems.add(
                    join(pool.path, "domains"),
                    f"no domain for level(s) {', '.join(missing)}",
                )
            start += pool.count


@dataclass(frozen=True)
class _Shape:
    """An explicit node shape from a cluster file; GPUs are spread over NUMA nodes, PCIe
    switches, NVLink groups and NICs in index order."""

    gpus: int
    product: str
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    numa_nodes: int
    nvlink: NvlinkKind
    nvlink_generation: int
    nvlink_group_gpus: int
    pcie_generation: int
    gpus_per_switch: int
    p2p: bool
    nic_count: int
    nic_gbit_s: float
    network_gbps_per_gpu: float | None
    """``None`` for a CPU-only node (no GPU traffic to carry)."""

    def make(self, name: str) -> Node:
        n = self.gpus
        gpus = tuple(
            Gpu(
                g,
                f"GPU-{name}-{g}",
                self.product,
                self.gpu_memory_mib,
                numa_node=g * self.numa_nodes // n,
                pcie_switch=g // self.gpus_per_switch,
                nvlink_group=self._nvlink_group(g),
                rail=g * self.nic_count // n if self.nic_count else -1,
            )
            for g in range(n)
        )
        nics = tuple(
            Nic(f"nic{k}", self.nic_gbit_s, numa_node=k * self.numa_nodes // self.nic_count, rail=k)
            for k in range(self.nic_count)
        )
        node = Node(
            name,
            gpus,
            cpu_milli=self.cpu_milli,
            memory_mib=self.memory_mib,
            nvlink=self.nvlink,
            nvlink_generation=self.nvlink_generation,
            pcie_generation=self.pcie_generation,
            p2p_supported=self.p2p,
            nics=nics,
        )
        if self.network_gbps_per_gpu is None:
            return node
        return dataclasses.replace(node, network_gbps_per_gpu=self.network_gbps_per_gpu)

    def _nvlink_group(self, g: int) -> int:
        if self.nvlink is NvlinkKind.NVSWITCH:
            return 0
        if self.nvlink is NvlinkKind.BRIDGE:
            return g // self.nvlink_group_gpus
        return -1


# ---------------------------------------------------------------------------- locations
def _yaml_positions(text: str) -> tuple[dict[str, int], list[str]]:
    """Line of every field path in a YAML (or JSON) text, and paths given twice; raises
    :class:`DocumentShapeError` for aliases without bound (:mod:`topology.field_lines`)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}, []
    return field_lines(root)


_LAST_STEP = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")


def _line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    probe = path
    while probe and probe not in lines:
        shorter = _LAST_STEP.sub("", probe)
        probe = "" if shorter == probe else shorter
    return lines.get(probe) if probe else None
