"""Which cluster a run uses: the trace's own, a preset, or a file.

``--cluster`` accepts a topology preset (``dgx-h100:64``, ``superpod-h100:256``), ``philly`` or
``philly:N`` (the Philly trace's 8-GPU hosts), ``philly:auto`` (as many of those hosts as keep
the trace's load as busy as Philly's node series says its nodes were, see
:mod:`simulator.traces.philly_activity`), a cluster file (``.yaml``/``.yml``/``.json``, see
``docs/cluster-file.md``), a saved Kubernetes Node list (``kubectl get nodes -o json``, read as
``phalanx place`` and ``phalanx serve`` read it) or an openb-style node list (``.csv``:
``sn,cpu_milli,memory_mib,gpu,model``). Without it the trace's own cluster is used.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.traces.openb import cluster_from_node_list
from phalanx.simulator.traces.philly import PHILLY_NODES, philly_cluster
from phalanx.simulator.traces.philly_activity import NodeSeriesError, auto_size
from phalanx.topology.model import Cluster
from phalanx.topology.presets import CLUSTER_ALIASES, NODE_PRESETS, cluster_preset, is_preset

CLUSTER_FILE_SUFFIXES = (".yaml", ".yml", ".json")
PHILLY_PRESET = "philly"
AUTO_COUNT = "auto"


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
    if base == PHILLY_PRESET and count == AUTO_COUNT:
        return philly_cluster(auto_philly_nodes(spec, workload))
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


def auto_philly_nodes(spec: str, workload: TraceWorkload | None) -> int:
    """``philly:auto``'s node count for ``workload``; the figures behind it go to the run's
    notes, so a report says what cluster it ran on and why."""
    activity = workload.node_activity if workload is not None else None
    if workload is None or activity is None:
        raise ClusterChoiceError(
            f"cluster {spec!r} sizes the cluster from a Philly trace's node-activity series "
            "(philly_node_sequence_*.csv[.gz] beside the jobs file); this trace has none: "
            "give philly:N"
        )
    try:
        size = auto_size([(j.submit_time_s, j.duration_s, j.gpus) for j in workload.jobs], activity)
    except (NodeSeriesError, OSError, ValueError) as err:
        raise ClusterChoiceError(f"cluster {spec!r}: {err}") from None
    note = size.note()
    if note not in workload.notes:
        workload.notes.append(note)
    return size.nodes


def known_presets() -> list[str]:
    return sorted([*NODE_PRESETS, *CLUSTER_ALIASES, PHILLY_PRESET])
