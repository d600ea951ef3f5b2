"""The cluster model: GPUs, NVLink domains, PCIe/NUMA, NICs/rails and the fabric tree."""

from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import Cluster, FabricLevel, Gpu, Nic, Node, NvlinkKind

__all__ = [
    "CapacityError",
    "Cluster",
    "CompiledCluster",
    "FabricLevel",
    "Gpu",
    "Nic",
    "Node",
    "NvlinkKind",
]
