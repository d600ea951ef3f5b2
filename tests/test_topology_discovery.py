"""NVML discovery against recorded nodes, through the recording backend and through the pynvml
backend on a fake pynvml module and a fake /sys built from the same recordings."""

from __future__ import annotations

import copy
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pynvml
import pytest
from phalanx.topology.discovery import (
    PCIE_CROSS_SOCKET,
    PCIE_HOST_BRIDGE,
    PCIE_SAME_NUMA,
    PCIE_SAME_SWITCH,
    DiscoveryDocumentError,
    discover,
    gfd_product_name,
    nic_line_rate_gbit_s,
    node_from_discovery,
    pcie_level_from_paths,
    publish_annotation,
)
from phalanx.topology.model import NvlinkKind
from phalanx.topology.nvml_backend import (
    DiscoveryError,
    FabricFacts,
    PynvmlBackend,
    RecordedBackend,
    record,
    sysfs_address,
)

FIXTURES = Path(__file__).resolve().parents[1] / "topology" / "fixtures"
DGX = FIXTURES / "nvml-dgx-h100.json"
PAIRS = FIXTURES / "nvml-pcie-pairs.json"


def recording(path: Path) -> dict:
    return json.loads(path.read_text())


def node_of(rec: dict, name: str = "n"):
    return node_from_discovery(discover(RecordedBackend(rec)), name, 1000, 1000)


# ---------------------------------------------------------------------------- recorded nodes
def test_dgx_h100_is_one_nvswitch_domain_with_a_rail_nic_per_gpu():
    doc = discover(RecordedBackend.load(DGX))
    assert doc["schema_version"] == 1 and doc["kind"] == "phalanx.io/gpu-topology"
    gpu = doc["gpus"][0]
    assert gpu["product"] == "NVIDIA-H100-80GB-HBM3"
    assert gpu["memory_mib"] == 81559
    assert gpu["pci_bus_id"] == "0000:1b:00.0"
    assert gpu["nvlink"] == {"generation": 4, "switch_links": 18, "gpu_links": {}}
    assert gpu["clique"] is None, "single-node NVSwitch systems report no fabric clique"
    assert [nic["line_rate_gbit_s"] for nic in doc["nics"]] == [400.0] * 8 + [200.0] * 2
    node = node_from_discovery(doc, "dgx", 224_000, 2_000_000)
    assert node.nvlink is NvlinkKind.NVSWITCH and node.nvlink_generation == 4
    assert node.pcie_generation == 5 and node.p2p_supported
    assert [g.numa_node for g in node.gpus] == [0] * 4 + [1] * 4
    assert [g.rail for g in node.gpus] == list(range(8))
    assert [n.name for n in node.nics] == [f"mlx5_{k}" for k in range(8)], "storage NICs left out"
    assert node.network_gbps_per_gpu == 50.0
    pair = node.pair_cost()
    assert np.all(pair[~np.eye(8, dtype=bool)] == 1.0)
    assert node.egress_cost() == 9.0


def test_pcie_pairs_node_has_bridged_pairs_sockets_rails_and_a_mig_gpu():
    node = node_of(recording(PAIRS))
    assert node.nvlink is NvlinkKind.BRIDGE
    assert [g.nvlink_group for g in node.gpus] == [0, 0, 1, 1, 2, 2, -1, -1]
    assert [g.pcie_switch for g in node.gpus] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [g.numa_node for g in node.gpus] == [0] * 4 + [1] * 4
    assert [g.rail for g in node.gpus] == [0, 0, -1, -1, 1, 1, -1, -1]
    assert [g.mig_enabled for g in node.gpus] == [False] * 7 + [True]
    assert node.pcie_generation == 4
    assert node.network_gbps_per_gpu == 2 * 200 / 8 / 8
    pair = node.pair_cost()
    assert pair[0, 1] == 3.0, "NVLink bridge"
    assert pair[0, 2] == 15.0 * 1.25, "same socket, another PCIe switch"
    assert pair[0, 4] == 30.0, "across sockets"
    assert pair[6, 7] == np.inf, "a MIG GPU shares nothing"


def test_the_document_survives_json_and_gives_the_same_node():
    doc = discover(RecordedBackend.load(PAIRS))
    again = json.loads(json.dumps(doc))
    assert node_from_discovery(again, "n", 1, 1) == node_from_discovery(doc, "n", 1, 1)


def test_recording_a_replayed_node_reproduces_the_recording():
    rec = recording(DGX)
    again = record(RecordedBackend(rec), description=rec["description"])
    assert again == rec


def test_fabric_clique_is_read_once_registration_completed():
    rec = recording(DGX)
    for gpu in rec["gpus"]:
        gpu["fabric"] = {
            "state": 3,
            "status": 0,
            "cluster_uuid": "7b968a6d-c8aa-45e1-9e07-e1e51be99c31",
            "clique_id": 1,
        }
    doc = discover(RecordedBackend(rec))
    assert {g["clique"] for g in doc["gpus"]} == {"7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1"}
    rec["gpus"][0]["fabric"]["state"] = 2
    assert discover(RecordedBackend(rec))["gpus"][0]["clique"] is None


@pytest.mark.parametrize(
    ("version", "kind", "generation"),
    [
        (4, NvlinkKind.NVSWITCH, 3),
        (7, NvlinkKind.NVSWITCH, 5),
        (8, NvlinkKind.NVSWITCH, 5),
        (2, NvlinkKind.BRIDGE, 3),
    ],
)
def test_nvlink_versions_map_to_generations_with_costs(version, kind, generation):
    rec = recording(DGX)
    for gpu in rec["gpus"]:
        for link in gpu["nvlinks"]:
            link["version"] = version
    node = node_of(rec)
    assert node.nvlink is kind and node.nvlink_generation == generation


def test_missing_p2p_raises_pcie_costs():
    rec = recording(PAIRS)
    rec["p2p_read_status"][2][3] = rec["p2p_read_status"][3][2] = 2
    node = node_of(rec)
    assert not node.p2p_supported
    assert node.pair_cost()[0, 2] == 15.0 * 1.25 * 1.5


def test_numa_falls_back_to_cpu_affinity_where_sysfs_has_none():
    rec = recording(DGX)
    rec["sysfs"]["numa_nodes"] = {k: -1 for k in rec["sysfs"]["numa_nodes"]}
    node = node_of(rec)
    assert [g.numa_node for g in node.gpus] == [0] * 4 + [1] * 4


def test_pcie_levels_from_sysfs_paths():
    sw = "/sys/devices/pci0000:10/0000:10:01.0/0000:11:00.0"
    assert (
        pcie_level_from_paths(
            f"{sw}/0000:12:00.0/0000:13:00.0", f"{sw}/0000:12:01.0/0000:14:00.0", True
        )
        == PCIE_SAME_SWITCH
    )
    other_port = "/sys/devices/pci0000:10/0000:10:02.0/0000:21:00.0/0000:22:00.0"
    assert (
        pcie_level_from_paths(f"{sw}/0000:12:00.0/0000:13:00.0", other_port, True)
        == PCIE_HOST_BRIDGE
    )
    other_root = "/sys/devices/pci0000:40/0000:40:01.0/0000:41:00.0"
    assert pcie_level_from_paths(f"{sw}/0000:13:00.0", other_root, True) == PCIE_SAME_NUMA
    assert pcie_level_from_paths(f"{sw}/0000:13:00.0", other_root, False) == PCIE_CROSS_SOCKET


def test_small_parsers():
    assert nic_line_rate_gbit_s("400 Gb/sec (4X NDR)") == 400.0
    assert nic_line_rate_gbit_s("") == 0.0
    assert gfd_product_name("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert sysfs_address("00000000:1B:00.0") == "0000:1b:00.0"


# ---------------------------------------------------------------------------- bad input
def test_malformed_documents_report_every_bad_field():
    doc = discover(RecordedBackend.load(PAIRS))
    bad = copy.deepcopy(doc)
    bad["schema_version"] = 7
    bad["gpus"][1]["memory_mib"] = "big"
    bad["gpus"][2]["index"] = 5
    bad["gpus"][3]["nvlink"]["gpu_links"] = {"12": 4}
    bad["p2p"][0][1] = "yes"
    bad["nics"][0]["gpu_pcie_level"] = [20]
    with pytest.raises(DiscoveryDocumentError) as info:
        node_from_discovery(bad, "n", 1, 1)
    text = str(info.value)
    for fragment in (
        "schema_version: 7 is not supported",
        "gpus[1].memory_mib: must be an integer",
        "gpus[2].index: GPUs must be listed in index order",
        "gpus[3].nvlink.gpu_links.12: must map a GPU index below 8",
        "p2p[0][1]: must be true or false",
        "nics[0].gpu_pcie_level: must list one NVML_TOPOLOGY_* level per GPU",
    ):
        assert fragment in text
    with pytest.raises(DiscoveryDocumentError, match="must be a mapping"):
        node_from_discovery([], "n", 1, 1)


def test_bad_recordings_are_discovery_errors(tmp_path):
    with pytest.raises(DiscoveryError, match="not an NVML recording"):
        RecordedBackend({"kind": "other"})
    with pytest.raises(DiscoveryError, match="version 9 is not supported"):
        RecordedBackend({**recording(DGX), "version": 9})
    rec = recording(DGX)
    del rec["gpus"][3]["uuid"]
    with pytest.raises(DiscoveryError, match=r"recording has no gpus\[3\]\.uuid"):
        discover(RecordedBackend(rec))
    broken = tmp_path / "r.json"
    broken.write_text("{")
    with pytest.raises(DiscoveryError, match=r"r\.json:1: invalid JSON"):
        RecordedBackend.load(broken)
    with pytest.raises(DiscoveryError, match="NVML reports no GPUs"):
        discover(RecordedBackend({**recording(DGX), "gpus": []}))


def test_without_drivers_the_backend_fails_with_a_clear_message(monkeypatch):
    def no_library() -> None:
        raise pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    with pytest.raises(DiscoveryError, match="must run on a node with NVIDIA drivers"):
        PynvmlBackend()


# ---------------------------------------------------------------------------- publishing
class FakeCoreV1:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def patch_node(self, name: str, body: dict) -> None:
        from kubernetes.client import ApiException

        if self.fail:
            raise ApiException(status=403, reason="Forbidden")
        self.calls.append((name, body))


def test_publish_writes_the_document_to_the_node_annotation():
    doc = discover(RecordedBackend.load(DGX))
    api = FakeCoreV1()
    publish_annotation(doc, "dgx-1", api)
    ((name, body),) = api.calls
    assert name == "dgx-1"
    assert json.loads(body["metadata"]["annotations"]["phalanx.io/gpu-topology"]) == doc
    with pytest.raises(DiscoveryError, match="cannot annotate node 'dgx-1': 403 Forbidden"):
        publish_annotation(doc, "dgx-1", FakeCoreV1(fail=True))


# ---------------------------------------------------------------------------- pynvml backend
def fake_pynvml(rec: dict) -> types.ModuleType:
    """A stand-in for the pynvml module that answers from a recording, in pynvml's shapes."""
    m = types.ModuleType("pynvml")
    m.NVMLError = pynvml.NVMLError
    m.NVML_NVLINK_MAX_LINKS = pynvml.NVML_NVLINK_MAX_LINKS
    m.c_nvmlGpuFabricInfo_v3_t = pynvml.c_nvmlGpuFabricInfo_v3_t
    gpus = rec["gpus"]

    def not_supported(*_: object) -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def link(h: int, n: int) -> dict:
        links = {x["link"]: x for x in gpus[h]["nvlinks"]}
        if n not in links:
            not_supported()
        return links[n]

    def fabric(h: int, ref: object) -> int:
        info = gpus[h]["fabric"]
        if info is None:
            not_supported()
        struct = ref._obj  # type: ignore[attr-defined]
        struct.state, struct.status, struct.cliqueId = (
            info["state"],
            info["status"],
            info["clique_id"],
        )
        struct.clusterUuid[:] = list(bytes.fromhex(info["cluster_uuid"].replace("-", "")))
        return 0

    def pci(bus_id: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(busId=bus_id.encode())

    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlSystemGetDriverVersion = lambda: rec["driver_version"]
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: gpus[h]["uuid"]
    m.nvmlDeviceGetName = lambda h: gpus[h]["name"]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=gpus[h]["memory_total_bytes"])
    m.nvmlDeviceGetPciInfo = lambda h: pci(gpus[h]["pci_bus_id"])
    m.nvmlDeviceGetCpuAffinity = lambda h, words: gpus[h]["cpu_affinity"][:words]
    m.nvmlDeviceGetMigMode = lambda h: [gpus[h]["mig_mode"], gpus[h]["mig_mode"]]
    m.nvmlDeviceGetMaxPcieLinkGeneration = lambda h: gpus[h]["max_pcie_generation"]
    m.nvmlDeviceGetNvLinkState = lambda h, n: link(h, n) and 1
    m.nvmlDeviceGetNvLinkVersion = lambda h, n: link(h, n)["version"]
    m.nvmlDeviceGetNvLinkRemoteDeviceType = lambda h, n: link(h, n)["remote_type"]
    m.nvmlDeviceGetNvLinkRemotePciInfo = lambda h, n: pci(link(h, n)["remote_bus_id"])
    m.nvmlDeviceGetTopologyCommonAncestor = lambda a, b: rec["common_ancestor"][a][b]

    def p2p(a: int, b: int, cap: int) -> int:
        assert cap == 0, "the read capability index must be passed as the int 0"
        return rec["p2p_read_status"][a][b]

    m.nvmlDeviceGetP2PStatus = p2p
    m.nvmlDeviceGetGpuFabricInfoV = fabric
    return m


def fake_sysfs(rec: dict, root: Path) -> Path:
    """``/sys`` as the recording saw it: PCI device links, numa_node files, infiniband ports."""
    sysfs = root / "sys"
    devices = sysfs / "bus" / "pci" / "devices"
    devices.mkdir(parents=True)
    for address, path in rec["sysfs"]["pci_paths"].items():
        real = sysfs / Path(path).relative_to("/sys")
        real.mkdir(parents=True)
        (real / "numa_node").write_text(f"{rec['sysfs']['numa_nodes'][address]}\n")
        os.symlink(real, devices / address)
    for nic in rec["sysfs"]["infiniband"]:
        dev = sysfs / "class" / "infiniband" / nic["name"]
        (dev / "ports" / "1").mkdir(parents=True)
        (dev / "ports" / "1" / "rate").write_text(nic["rate"] + "\n")
        os.symlink(devices / nic["pci_address"], dev / "device")
    return sysfs


@pytest.mark.parametrize("fixture", [DGX, PAIRS], ids=lambda p: p.stem)
def test_pynvml_backend_reads_what_the_recording_holds(fixture, tmp_path, monkeypatch):
    rec = recording(fixture)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(rec))
    monkeypatch.setattr(os, "cpu_count", lambda: rec["cpu_count"])
    backend = PynvmlBackend(sysfs_root=fake_sysfs(rec, tmp_path))
    doc = discover(backend)
    live = record(backend, description=rec["description"])
    backend.close()
    assert doc == discover(RecordedBackend(rec))
    sysfs_root = str(tmp_path / "sys")
    live["sysfs"]["pci_paths"] = {
        a: "/sys" + p.removeprefix(sysfs_root) for a, p in live["sysfs"]["pci_paths"].items()
    }
    assert live == rec


def test_pynvml_backend_reads_the_fabric_struct(tmp_path, monkeypatch):
    rec = recording(DGX)
    rec["gpus"][0]["fabric"] = {
        "state": 3,
        "status": 0,
        "cluster_uuid": "7b968a6d-c8aa-45e1-9e07-e1e51be99c31",
        "clique_id": 4,
    }
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(rec))
    backend = PynvmlBackend(sysfs_root=fake_sysfs(rec, tmp_path))
    fabric = backend.fabric(0)
    assert fabric is not None and fabric.clique_id == 4
    assert fabric.cluster_uuid == "7b968a6d-c8aa-45e1-9e07-e1e51be99c31"
    assert backend.fabric(1) == FabricFacts(0, 0, "00000000-0000-0000-0000-000000000000", 0)
