"""Normalised link costs shared by every topology source.

A cost is ``REFERENCE_GBPS / B`` where B is the per-GPU bandwidth of the link in GB/s, one
direction, so H100 NVLink4 through NVSwitch costs 1.0 and bigger numbers mean slower links.
Defaults follow the link table of the research notes (NCCL's bandwidth model and NVIDIA's
reference architectures); every figure can be overridden in a cluster file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_GBPS = 450.0
"""H100 NVLink4 bandwidth per GPU per direction, the unit of the cost scale."""

COST_SAME_GPU = 0.0
COST_NVLINK5 = 0.5
"""NVLink5 through NVSwitch (B200 HGX, GB200 NVL72 clique), 900 GB/s per direction."""
COST_NVLINK4 = 1.0
"""NVLink4 through NVSwitch (H100/H200 HGX), 450 GB/s per direction."""
COST_NVLINK3 = 1.5
"""NVLink3 through NVSwitch (A100 HGX), 300 GB/s per direction."""
COST_NVLINK_BRIDGE = 3.0
"""NVLink bridge between a pair of PCIe cards, about 115-200 GB/s measured."""
COST_PCIE_GEN5_SWITCH = 8.0
COST_PCIE_GEN4_SWITCH = 15.0
COST_HOST_BRIDGE_FACTOR = 1.25
"""Same socket but different PCIe switch: the research notes treat PHB/NODE like PIX; we add a
small factor so that same-switch pairs win ties."""
COST_CROSS_SOCKET = 30.0
"""Across the CPU interconnect (SYS), NCCL's 10-22 GB/s; 30 is the notes' default."""
NO_P2P_FACTOR = 1.5
"""GPUs without peer-to-peer (GeForce parts) go through host memory."""
COST_MIG = math.inf
"""A MIG slice has no NVLink and no P2P: it never shares a collective with another device."""

COST_SAME_LEAF = 10.0
"""Different node, same rail group or leaf switch, one 400G NIC per GPU."""
COST_SAME_SPINE = 11.0
"""Through a non-blocking spine (same scalable unit or block)."""

DEFAULT_HOP_LATENCY_US = 5.0
"""Per network hop, NCCL's ring LL/LL128 network latency range is 2.7-14 us."""
NVLINK_HOP_LATENCY_US = 1.0


def cost_from_gbps(gbps_per_gpu: float, oversubscription: float = 1.0) -> float:
    """Cost of a link of ``gbps_per_gpu`` GB/s per direction behind an ``r:1`` oversubscribed
    layer (bandwidth divided by r under full load)."""
    if gbps_per_gpu <= 0:
        raise ValueError(f"bandwidth must be positive, got {gbps_per_gpu} GB/s")
    if oversubscription < 1:
        raise ValueError(f"oversubscription must be >= 1, got {oversubscription}")
    return REFERENCE_GBPS / gbps_per_gpu * oversubscription


def nic_gbps_to_gbytes(line_rate_gbit_s: float) -> float:
    """A NIC's line rate in Gb/s as GB/s per direction (400G NDR -> 50 GB/s)."""
    return line_rate_gbit_s / 8.0


@dataclass(frozen=True)
class LinkCosts:
    """The intra-node cost table, overridable per cluster file."""

    nvlink5: float = COST_NVLINK5
    nvlink4: float = COST_NVLINK4
    nvlink3: float = COST_NVLINK3
    nvlink_bridge: float = COST_NVLINK_BRIDGE
    pcie_gen5: float = COST_PCIE_GEN5_SWITCH
    pcie_gen4: float = COST_PCIE_GEN4_SWITCH
    host_bridge_factor: float = COST_HOST_BRIDGE_FACTOR
    cross_socket: float = COST_CROSS_SOCKET
    no_p2p_factor: float = NO_P2P_FACTOR

    def nvswitch(self, generation: int) -> float:
        table = {3: self.nvlink3, 4: self.nvlink4, 5: self.nvlink5}
        if generation not in table:
            raise ValueError(f"unknown NVLink generation {generation}; expected one of 3, 4, 5")
        return table[generation]

    def pcie(self, generation: int) -> float:
        table = {4: self.pcie_gen4, 5: self.pcie_gen5}
        if generation not in table:
            raise ValueError(f"unknown PCIe generation {generation}; expected 4 or 5")
        return table[generation]
