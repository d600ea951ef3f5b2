"""Kubernetes objects for the extender's tests: a DGX H100 Node, a GPU Pod, and the labels that
make pods a Phalanx gang."""

from __future__ import annotations

from typing import Any

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"


def kube_node(name: str, su: str, gpus: int = 8, ready: bool = True) -> dict[str, Any]:
    """A DGX H100 Node as GPU Feature Discovery and the Phalanx topology labels describe it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": GPU_PRODUCT,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": "81559",
                "phalanx.io/su": su,
                "phalanx.io/spine": "spine0",
            },
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "224", "memory": "2048Gi", "nvidia.com/gpu": str(gpus)},
            "allocatable": {"cpu": "224", "memory": "2048Gi", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def kube_pod(
    name: str,
    namespace: str = "ml",
    gpus: int = 8,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [
                {
                    "name": "worker",
                    "image": "trainer:1",
                    "resources": {
                        "requests": {"nvidia.com/gpu": str(gpus), "cpu": "8", "memory": "64Gi"},
                        "limits": {"nvidia.com/gpu": str(gpus)},
                    },
                }
            ],
        },
        "status": {"phase": "Pending"},
    }


def phalanx_gang(name: str, size: int) -> dict[str, str]:
    return {"phalanx.io/gang": name, "phalanx.io/gang-size": str(size)}
