"""Which cluster a run uses: the trace's own, a preset, or a file.

``--cluster`` accepts a topology preset (``dgx-h100:64``, ``superpod-h100:256``), ``philly`` or
``philly:N`` (the Philly trace's 8-GPU hosts), a cluster file (``.yaml``/``.yml``/``.json``, see
``docs/cluster-file.md``), a saved Kubernetes Node list (``kubectl get nodes -o json``, read as
``phalanx place`` and ``phalanx serve`` read it) or an openb-style node list (``.csv``:
``sn,cpu_milli,memory_mib,gpu,model``). Without it the trace's own cluster is used.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.traces.openb import cluster_from_node_list
from phalanx.simulator.traces.philly import PHILLY_NODES, philly_cluster
from phalanx.topology.model import Cluster
from phalanx.topology.presets import CLUSTER_ALIASES, NODE_PRESETS, cluster_preset, is_preset

CLUSTER_FILE_SUFFIXES = (".yaml", ".yml", ".json")
PHILLY_PRESET = "philly"


class ClusterChoiceError(ValueError):
    """A ``--cluster`` value that names nothing usable."""


def resolve_cluster(spec: str | None, workload: TraceWorkload | None = None) -> Cluster:
    if spec is None:
        if workload is not None and workload.cluster is not None:
            return workload.cluster
        raise ClusterChoiceError(
            "this trace has no cluster of its own; give --cluster PRESET|FILE "
            f"(presets: {', '.join(known_presets())})"
        )
    base, _, count = spec.partition(":")
    if base == PHILLY_PRESET:
        try:
            nodes = int(count) if count else PHILLY_NODES
        except ValueError:
            raise ClusterChoiceError(
                f"cluster {spec!r}: node count {count!r} is not a number"
            ) from None
        if nodes < 1:
            raise ClusterChoiceError(f"cluster {spec!r}: node count must be at least 1")
        return philly_cluster(nodes)
    if is_preset(spec):
        try:
            return cluster_preset(spec)
        except (KeyError, ValueError) as err:
            raise ClusterChoiceError(str(err).strip("'\"")) from None
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() in CLUSTER_FILE_SUFFIXES:
            # The loader ``place``, ``topology show`` and ``serve`` use: a cluster file, or a
            # saved Kubernetes Node list (``kubectl get nodes -o json``).
            from phalanx.topology.sources import load_cluster

            return load_cluster(str(path))
        if path.suffix.lower() == ".csv":
            return cluster_from_node_list(path)
        raise ClusterChoiceError(
            f"cluster file {spec!r}: expected a cluster file or Kubernetes Node list "
            f"({', '.join(CLUSTER_FILE_SUFFIXES)}) or an openb node list (.csv)"
        )
    raise ClusterChoiceError(
        f"cluster {spec!r} is neither a preset nor a file; presets: {', '.join(known_presets())}"
    )


def known_presets() -> list[str]:
    return sorted([*NODE_PRESETS, *CLUSTER_ALIASES, PHILLY_PRESET])
