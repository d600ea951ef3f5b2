"""Where GPU discovery gets its facts: NVML through ``pynvml``, plus the sysfs files NVML does
not cover (NICs, PCIe paths, NUMA nodes).

Everything sits behind :class:`GpuBackend`, so discovery runs unchanged against the real driver
(:class:`PynvmlBackend`) or against a recording of one (:class:`RecordedBackend`, made by
:func:`record`). Values keep NVML's own shapes and codes (bus ids like ``00000000:1B:00.0``,
affinity bitmask words, ``NVML_TOPOLOGY_*`` levels), so a recording reads like what pynvml
returned and the normalisation in :mod:`topology.discovery` is exercised by tests.
"""

from __future__ import annotations

import json
import os
import uuid
from ctypes import byref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

RECORDING_KIND = "phalanx.io/nvml-recording"
RECORDING_VERSION = 1

# NVML constants (values from pynvml), named here so documents can be read without the driver.
NVLINK_REMOTE_GPU = 0
NVLINK_REMOTE_SWITCH = 2
FABRIC_STATE_COMPLETED = 3
NVML_SUCCESS = 0
P2P_STATUS_OK = 0
P2P_CAPS_INDEX_READ = 0
"""pynvml 13.615 defines ``NVML_P2P_CAPS_INDEX_READ`` as the tuple ``(0,)``: pass the int."""
MIG_ENABLED = 1
NVLINK_STATE_ENABLED = 1
SYSFS_NO_NUMA_NODE = -1


class DiscoveryError(RuntimeError):
    """GPU discovery cannot run here (no driver, no GPUs) or its input is unusable."""


@dataclass(frozen=True)
class NvLinkFacts:
    """One active NVLink of a GPU, as NVML reports it."""

    link: int
    version: int
    """``NVML_NVLINK_VERSION_*`` (6 = NVLink 4.0)."""
    remote_type: int
    """``NVML_NVLINK_DEVICE_TYPE_*``: 0 GPU, 1 IBMNPU, 2 SWITCH, 255 unknown."""
    remote_bus_id: str


@dataclass(frozen=True)
class FabricFacts:
    """``nvmlDeviceGetGpuFabricInfoV`` fields that identify a multi-node NVLink clique."""

    state: int
    status: int
    cluster_uuid: str
    clique_id: int


@dataclass(frozen=True)
class InfinibandFacts:
    """An RDMA device from ``/sys/class/infiniband`` (NVML does not see NICs)."""

    name: str
    pci_address: str
    rate: str
    """Port 1 ``rate`` file, e.g. ``400 Gb/sec (4X NDR)``."""


class GpuBackend(Protocol):
    """The facts discovery reads, one call per NVML (or sysfs) query."""

    def driver_version(self) -> str: ...
    def cpu_count(self) -> int: ...
    def device_count(self) -> int: ...
    def uuid(self, gpu: int) -> str: ...
    def name(self, gpu: int) -> str: ...
    def memory_total_bytes(self, gpu: int) -> int: ...
    def pci_bus_id(self, gpu: int) -> str: ...
    def cpu_affinity(self, gpu: int) -> list[int]: ...
    def mig_mode(self, gpu: int) -> int | None: ...
    def max_pcie_generation(self, gpu: int) -> int | None: ...
    def nvlinks(self, gpu: int) -> list[NvLinkFacts]: ...
    def common_ancestor(self, gpu_a: int, gpu_b: int) -> int: ...
    def p2p_read_status(self, gpu_a: int, gpu_b: int) -> int: ...
    def fabric(self, gpu: int) -> FabricFacts | None: ...
    def infiniband_devices(self) -> list[InfinibandFacts]: ...
    def pci_path(self, pci_address: str) -> str: ...
    def pci_numa_node(self, pci_address: str) -> int: ...
    def close(self) -> None: ...


def sysfs_address(bus_id: str) -> str:
    """NVML's ``00000000:1B:00.0`` as sysfs spells it, ``0000:1b:00.0``."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{domain[-4:]:0>4}:{rest}"


def _text(value: bytes | str) -> str:
    """pynvml returns ``bytes`` for struct ``c_char`` fields and ``str`` elsewhere."""
    return value.decode() if isinstance(value, bytes) else value


class PynvmlBackend:
    """The local driver, through pynvml, and the local ``/sys``."""

    def __init__(self, sysfs_root: str | Path = "/sys") -> None:
        import pynvml

        self._nvml = pynvml
        self._sysfs = Path(sysfs_root)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise DiscoveryError(
                f"cannot initialise NVML ({exc}); GPU discovery must run on a node with NVIDIA "
                "drivers, e.g. as a DaemonSet on GPU nodes"
            ) from None
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise DiscoveryError(f"NVML cannot list the GPUs: {exc}") from None

    def _optional(self, call: Any, *args: Any) -> Any:
        """A feature query that older GPUs or drivers may not support."""
        try:
            return call(*args)
        except self._nvml.NVMLError:
            return None

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    def device_count(self) -> int:
        return len(self._handles)

    def uuid(self, gpu: int) -> str:
        return _text(self._nvml.nvmlDeviceGetUUID(self._handles[gpu]))

    def name(self, gpu: int) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handles[gpu]))

    def memory_total_bytes(self, gpu: int) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handles[gpu]).total)

    def pci_bus_id(self, gpu: int) -> str:
        return _text(self._nvml.nvmlDeviceGetPciInfo(self._handles[gpu]).busId)

    def cpu_affinity(self, gpu: int) -> list[int]:
        words = -(-self.cpu_count() // 64)
        mask = self._optional(self._nvml.nvmlDeviceGetCpuAffinity, self._handles[gpu], words)
        return [int(w) for w in mask] if mask is not None else []

    def mig_mode(self, gpu: int) -> int | None:
        mode = self._optional(self._nvml.nvmlDeviceGetMigMode, self._handles[gpu])
        return int(mode[0]) if mode is not None else None

    def max_pcie_generation(self, gpu: int) -> int | None:
        return self._optional(self._nvml.nvmlDeviceGetMaxPcieLinkGeneration, self._handles[gpu])

    def nvlinks(self, gpu: int) -> list[NvLinkFacts]:
        n, h = self._nvml, self._handles[gpu]
        links = []
        for link in range(n.NVML_NVLINK_MAX_LINKS):
            try:
                if n.nvmlDeviceGetNvLinkState(h, link) != NVLINK_STATE_ENABLED:
                    continue
                links.append(
                    NvLinkFacts(
                        link,
                        int(n.nvmlDeviceGetNvLinkVersion(h, link)),
                        int(n.nvmlDeviceGetNvLinkRemoteDeviceType(h, link)),
                        _text(n.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId),
                    )
                )
            except n.NVMLError:
                continue
        return links

    def common_ancestor(self, gpu_a: int, gpu_b: int) -> int:
        return int(
            self._nvml.nvmlDeviceGetTopologyCommonAncestor(
                self._handles[gpu_a], self._handles[gpu_b]
            )
        )

    def p2p_read_status(self, gpu_a: int, gpu_b: int) -> int:
        return int(
            self._nvml.nvmlDeviceGetP2PStatus(
                self._handles[gpu_a], self._handles[gpu_b], P2P_CAPS_INDEX_READ
            )
        )

    def fabric(self, gpu: int) -> FabricFacts | None:
        info = self._nvml.c_nvmlGpuFabricInfo_v3_t()
        if (
            self._optional(self._nvml.nvmlDeviceGetGpuFabricInfoV, self._handles[gpu], byref(info))
            is None
        ):
            return None
        cluster = str(uuid.UUID(bytes=bytes(info.clusterUuid)))
        return FabricFacts(int(info.state), int(info.status), cluster, int(info.cliqueId))

    def infiniband_devices(self) -> list[InfinibandFacts]:
        root = self._sysfs / "class" / "infiniband"
        if not root.is_dir():
            return []
        devices = []
        for dev in sorted(root.iterdir()):
            address = Path(os.path.realpath(dev / "device")).name
            rate_file = dev / "ports" / "1" / "rate"
            rate = rate_file.read_text().strip() if rate_file.exists() else ""
            devices.append(InfinibandFacts(dev.name, address, rate))
        return devices

    def pci_path(self, pci_address: str) -> str:
        return os.path.realpath(self._sysfs / "bus" / "pci" / "devices" / pci_address)

    def pci_numa_node(self, pci_address: str) -> int:
        path = self._sysfs / "bus" / "pci" / "devices" / pci_address / "numa_node"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return SYSFS_NO_NUMA_NODE

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def record(backend: GpuBackend, description: str = "") -> dict[str, Any]:
    """Every answer discovery needs from ``backend``, as a JSON-able recording that
    :class:`RecordedBackend` replays."""
    n = backend.device_count()
    gpus = []
    for g in range(n):
        fabric = backend.fabric(g)
        gpus.append(
            {
                "uuid": backend.uuid(g),
                "name": backend.name(g),
                "memory_total_bytes": backend.memory_total_bytes(g),
                "pci_bus_id": backend.pci_bus_id(g),
                "cpu_affinity": backend.cpu_affinity(g),
                "mig_mode": backend.mig_mode(g),
                "max_pcie_generation": backend.max_pcie_generation(g),
                "nvlinks": [asdict(link) for link in backend.nvlinks(g)],
                "fabric": asdict(fabric) if fabric else None,
            }
        )
    nics = backend.infiniband_devices()
    addresses = [sysfs_address(backend.pci_bus_id(g)) for g in range(n)]
    addresses += [nic.pci_address for nic in nics]
    return {
        "kind": RECORDING_KIND,
        "version": RECORDING_VERSION,
        "description": description,
        "driver_version": backend.driver_version(),
        "cpu_count": backend.cpu_count(),
        "gpus": gpus,
        "common_ancestor": [
            [0 if a == b else backend.common_ancestor(a, b) for b in range(n)] for a in range(n)
        ],
        "p2p_read_status": [
            [P2P_STATUS_OK if a == b else backend.p2p_read_status(a, b) for b in range(n)]
            for a in range(n)
        ],
        "sysfs": {
            "infiniband": [asdict(nic) for nic in nics],
            "pci_paths": {a: backend.pci_path(a) for a in addresses},
            "numa_nodes": {a: backend.pci_numa_node(a) for a in addresses},
        },
    }


class RecordedBackend:
    """Replays a recording made by :func:`record` (or written by hand in its shape)."""

    def __init__(self, recording: dict[str, Any], source: str = "<recording>") -> None:
        if not isinstance(recording, dict) or recording.get("kind") != RECORDING_KIND:
            raise DiscoveryError(f"{source}: not an NVML recording (kind {RECORDING_KIND!r})")
        if recording.get("version") != RECORDING_VERSION:
            raise DiscoveryError(
                f"{source}: recording version {recording.get('version')!r} is not supported; "
                f"expected {RECORDING_VERSION}"
            )
        self._r = recording
        self._source = source

    @classmethod
    def load(cls, path: str | Path) -> RecordedBackend:
        try:
            return cls(json.loads(Path(path).read_text()), str(path))
        except OSError as exc:
            raise DiscoveryError(f"{path}: cannot read recording: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise DiscoveryError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None

    def _get(self, *keys: str | int) -> Any:
        value: Any = self._r
        try:
            for key in keys:
                value = value[key]
        except (KeyError, IndexError, TypeError):
            where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)
            raise DiscoveryError(f"{self._source}: recording has no {where.lstrip('.')}") from None
        return value

    def driver_version(self) -> str:
        return str(self._get("driver_version"))

    def cpu_count(self) -> int:
        return int(self._get("cpu_count"))

    def device_count(self) -> int:
        return len(self._get("gpus"))

    def uuid(self, gpu: int) -> str:
        return str(self._get("gpus", gpu, "uuid"))

    def name(self, gpu: int) -> str:
        return str(self._get("gpus", gpu, "name"))

    def memory_total_bytes(self, gpu: int) -> int:
        return int(self._get("gpus", gpu, "memory_total_bytes"))

    def pci_bus_id(self, gpu: int) -> str:
        return str(self._get("gpus", gpu, "pci_bus_id"))

    def cpu_affinity(self, gpu: int) -> list[int]:
        return [int(w) for w in self._get("gpus", gpu, "cpu_affinity")]

    def mig_mode(self, gpu: int) -> int | None:
        return self._get("gpus", gpu, "mig_mode")

    def max_pcie_generation(self, gpu: int) -> int | None:
        return self._get("gpus", gpu, "max_pcie_generation")

    def nvlinks(self, gpu: int) -> list[NvLinkFacts]:
        try:
            return [NvLinkFacts(**link) for link in self._get("gpus", gpu, "nvlinks")]
        except TypeError as exc:
            raise DiscoveryError(f"{self._source}: gpus[{gpu}].nvlinks: {exc}") from None

    def common_ancestor(self, gpu_a: int, gpu_b: int) -> int:
        return int(self._get("common_ancestor", gpu_a, gpu_b))

    def p2p_read_status(self, gpu_a: int, gpu_b: int) -> int:
        return int(self._get("p2p_read_status", gpu_a, gpu_b))

    def fabric(self, gpu: int) -> FabricFacts | None:
        fabric = self._get("gpus", gpu, "fabric")
        try:
            return FabricFacts(**fabric) if fabric is not None else None
        except TypeError as exc:
            raise DiscoveryError(f"{self._source}: gpus[{gpu}].fabric: {exc}") from None

    def infiniband_devices(self) -> list[InfinibandFacts]:
        try:
            return [InfinibandFacts(**nic) for nic in self._get("sysfs", "infiniband")]
        except TypeError as exc:
            raise DiscoveryError(f"{self._source}: sysfs.infiniband: {exc}") from None

    def pci_path(self, pci_address: str) -> str:
        return str(self._get("sysfs", "pci_paths", pci_address))

    def pci_numa_node(self, pci_address: str) -> int:
        return int(self._get("sysfs", "numa_nodes", pci_address))

    def close(self) -> None:
        """Nothing to release."""
