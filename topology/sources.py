"""One way to name a cluster on a command line: a preset, a cluster file, or a saved list of
Kubernetes Node objects (``kubectl get nodes -o json``)."""

from __future__ import annotations

from pathlib import Path

from phalanx.topology.clusterfile import ClusterFileError, cluster_from_document, read_document_file
from phalanx.topology.kube import AUTO, cluster_from_nodes
from phalanx.topology.model import Cluster
from phalanx.topology.presets import CLUSTER_ALIASES, NODE_PRESETS, cluster_preset, is_preset

NODE_LIST_KINDS = ("NodeList", "List")


class ClusterSourceError(ValueError):
    """A cluster spec that names no preset and no readable file."""


def load_cluster(spec: str, label_set: str = AUTO) -> Cluster:
    """``superpod-h100:256``, ``cluster.yaml`` or ``nodes.json``; ``label_set`` picks the
    topology labels of a Node list (see :mod:`topology.kube`).

    Raises :class:`ClusterSourceError`, :class:`~topology.clusterfile.ClusterFileError` or
    :class:`~topology.kube.MalformedNodeError`, all ``ValueError``s naming the problem.
    """
    if is_preset(spec):
        try:
            return cluster_preset(spec)
        except (KeyError, ValueError) as exc:
            raise ClusterSourceError(str(exc).strip("\"'")) from None
    if not Path(spec).exists():
        known = ", ".join(sorted([*NODE_PRESETS, *CLUSTER_ALIASES]))
        raise ClusterSourceError(
            f"{spec!r} is neither a cluster preset (PRESET[:NODES], presets: {known}) nor a file"
        )
    parsed = read_document_file(spec)
    doc = parsed.doc
    if isinstance(doc, dict) and doc.get("kind") in NODE_LIST_KINDS:
        items = doc.get("items")
        if not isinstance(items, list):
            raise ClusterFileError(parsed.source, [f"{parsed.source}: items: must be a list"])
        return cluster_from_nodes(items, label_set, name=parsed.stem)
    return cluster_from_document(
        doc,
        source=parsed.source,
        default_name=parsed.stem,
        lines=parsed.lines,
        duplicate_keys=parsed.duplicate_keys,
    )
