"""The cluster-file parser: reads a parsed document section by section (costs, node pools,
fabric), builds the nodes and levels, and checks the domains, collecting every problem.

Pools are read in :mod:`topology.clusterfile_pools` (node shapes in
:mod:`topology.clusterfile_nodes`), fabric levels in :mod:`topology.clusterfile_fabric`.
"""

from __future__ import annotations

import dataclasses

from phalanx.topology.clusterfile_fabric import (
    check_level_names,
    fabric_levels,
    read_explicit_levels,
    read_preset_fabric,
    with_level_costs,
)
from phalanx.topology.clusterfile_pools import (
    assign_pool_domains,
    build_nodes,
    check_domains,
    read_pools,
)
from phalanx.topology.costs import LinkCosts
from phalanx.topology.fields import Problems, Reader
from phalanx.topology.model import Cluster

LINK_COST_FIELDS = tuple(f.name for f in dataclasses.fields(LinkCosts))
FACTOR_FIELDS = ("host_bridge_factor", "no_p2p_factor")
"""Multipliers, which must not make a link cheaper."""


class ClusterFileParser:
    """Reads a whole document into a cluster, recording every problem in ``problems``."""

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
            explicit = read_explicit_levels(fabric)
        before_pools = len(self.problems)
        pools = read_pools(root)
        pools_complete = pools is not None and len(self.problems) == before_pools
        if explicit is not None:
            check_level_names(self.problems, pools or [], level_costs, explicit)
            explicit = with_level_costs(self.problems, explicit, level_costs)
        # a preset fabric's own fields are checked now, so their problems are reported with
        # the pools' (the levels themselves need the nodes, built below)
        preset_fabric = None
        if fabric is not None and fabric.has("preset"):
            preset_fabric = read_preset_fabric(fabric, pools or [], pools_complete)
        if self.problems or pools is None:
            return None
        nodes = build_nodes(self.problems, pools, link_costs)
        if self.problems:
            return None
        if explicit is None:
            levels = fabric_levels(self.problems, fabric, preset_fabric, nodes)
            if levels is None:
                return None
            check_level_names(self.problems, pools, level_costs, levels)
            levels = with_level_costs(self.problems, levels, level_costs)
        else:
            levels = explicit
        if self.problems:
            return None
        assign_pool_domains(pools, nodes)
        check_domains(self.problems, pools, nodes, levels)
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
