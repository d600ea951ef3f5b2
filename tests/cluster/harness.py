"""A real control plane on loopback: etcd, kube-apiserver, kube-scheduler and ``phalanx serve``.

What is real: the processes are the upstream components built from source (``build.py``), the
apiserver serves TLS with RBAC authorization on, kube-scheduler runs the
``KubeSchedulerConfiguration`` rendered from the Helm chart (only the deployment-site fields are
filled in: its kubeconfig and the extender's loopback URL), and ``phalanx serve`` runs the
chart's settings with a token of the chart's ServiceAccount, so only the chart's ClusterRole
authorises it. What is absent: kubelets (a bound pod stays Pending; a test ends it through the
status subresource or deletes it) and kube-controller-manager (so the ``ServiceAccount`` and
``TaintNodesByCondition`` admission plugins, which expect its controllers, are off).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from phalanx.extender.chart import (
    SCHEDULER_CONFIG_KEY,
    SCHEDULER_CONFIGMAP,
    merge_values,
    render_chart,
    rendered_objects,
)

from tests.cluster.api_fault_proxy import ApiFaultProxy
from tests.cluster.build import ControlPlaneBinaries
from tests.cluster.pki import Pki, make_pki
from tests.cluster.service_proxy import is_ready

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "phalanx"
NAMESPACE = "phalanx-system"
SERVICE_ACCOUNT = "phalanx-extender"
SERVE_CONFIGMAP = "phalanx-extender"
SERVE_CONFIG_KEY = "serve.yaml"
FEATURE_GATES = "GenericWorkload=true"
"""The native Workload API (beta in 1.37, off by default) for the native gang dialect."""
RUNTIME_CONFIG = "scheduling.k8s.io/v1beta1=true"
DISABLED_ADMISSION = "ServiceAccount,TaintNodesByCondition"
"""Both expect kube-controller-manager's controllers, which this control plane does not run."""
START_TIMEOUT_S = 300.0
"""Generous: on a loaded 2-core machine kube-apiserver alone has taken over 2 minutes to start."""
STOP_TIMEOUT_S = 10.0
TOKEN_TTL_S = 24 * 3600
POLL_S = 0.1
SCHEDULER_READY_LINE = "Caches populated"
"""kube-scheduler logs this (at -v=2) once its informers have listed; it schedules from then."""
NODE_WRITERS = 8


class ControlPlaneError(RuntimeError):
    """A component did not start; the message names it and ends with its log's last lines."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    """One component: its command, its log file, and the running process."""

    name: str
    command: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen is not None and self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(what: str, check: Any, timeout_s: float, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise ControlPlaneError(f"{process.name} exited while {what}:\n{process.log_tail()}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(POLL_S)
    tail = f":\n{process.log_tail()}" if process is not None else ""
    raise ControlPlaneError(f"timed out after {timeout_s:.0f} s {what}{tail}")


def kubeconfig(server: str, ca: Path, user: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        "current-context": "test",
    }


@dataclass
class ControlPlane:
    """The processes and files of one loopback control plane; ``start()`` then ``stop()``."""

    binaries: ControlPlaneBinaries
    workdir: Path
    chart_values: dict[str, Any] = field(default_factory=dict)
    serve_settings: dict[str, Any] = field(default_factory=dict)
    with_extender: bool = True
    scheduler_feature_gates: str = FEATURE_GATES
    processes: dict[str, Process] = field(default_factory=dict)
    pki: Pki | None = None
    apiserver_url: str = ""
    extender_url: str = ""
    admin_kubeconfig: Path | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """etcd, kube-apiserver, the chart's RBAC and kube-scheduler; the extender starts once a
        scenario has put its nodes in (``set_nodes`` then ``start_extender``)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        self._start_etcd()
        self._start_apiserver()
        self._install_chart_access()
        if self.with_extender:
            self.extender_port = free_port()
            self.extender_url = f"http://127.0.0.1:{self.extender_port}"
        self.start_scheduler()

    def stop(self) -> None:
        self.stop_scheduler()
        self.stop_extender()
        for name in ("kube-apiserver", "etcd"):
            process = self.processes.get(name)
            if process is not None:
                process.stop()

    def logs(self) -> dict[str, Path]:
        return {name: p.log_path for name, p in self.processes.items()}

    # --- components ------------------------------------------------------------------------
    def _process(self, name: str, command: list[str]) -> Process:
        process = Process(name, command, self.workdir / "logs" / f"{name}.log")
        self.processes[name] = process
        return process

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        self.etcd_url = url
        etcd = self._process(
            "etcd",
            [
                str(self.binaries.path("etcd")),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        etcd.start()
        import urllib.request

        wait_until(
            "waiting for etcd's /health",
            lambda: b'"health":"true"' in urllib.request.urlopen(f"{url}/health", timeout=1).read(),
            START_TIMEOUT_S,
            etcd,
        )

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        port = free_port()
        self.apiserver_url = f"https://127.0.0.1:{port}"
        pki = self.pki
        apiserver = self._process(
            "kube-apiserver",
            [
                str(self.binaries.path("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--disable-admission-plugins={DISABLED_ADMISSION}",
                f"--feature-gates={FEATURE_GATES}",
                f"--runtime-config={RUNTIME_CONFIG}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--v=1",
            ],
        )
        apiserver.start()
        self.admin_kubeconfig = self._write_kubeconfig(
            "admin", {"client-certificate": str(pki.admin.cert), "client-key": str(pki.admin.key)}
        )
        wait_until(
            "waiting for kube-apiserver's /readyz",
            lambda: self.admin_get("/readyz") == b"ok",
            START_TIMEOUT_S,
            apiserver,
        )
        api = self.api()
        # RBAC's bootstrap roles are reconciled just after /readyz turns green on a fresh etcd.
        from kubernetes import client

        rbac = client.RbacAuthorizationV1Api(api)
        wait_until(
            "waiting for the bootstrap ClusterRole system:kube-scheduler",
            lambda: rbac.read_cluster_role("system:kube-scheduler") is not None,
            START_TIMEOUT_S,
            apiserver,
        )

    def _write_kubeconfig(self, name: str, user: dict[str, str], server: str = "") -> Path:
        assert self.pki is not None
        path = self.workdir / f"{name}.kubeconfig"
        config = kubeconfig(server or self.apiserver_url, self.pki.ca.cert, user)
        path.write_text(yaml.safe_dump(config))
        return path

    def admin_get(self, path: str) -> bytes:
        """GET ``path`` from the apiserver as the administrator (raw body)."""
        import ssl
        import urllib.request

        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        with urllib.request.urlopen(self.apiserver_url + path, context=context, timeout=5) as r:
            return bytes(r.read())

    def api(self) -> Any:
        """A kubernetes ApiClient as the test's administrator (``system:masters``)."""
        from kubernetes import config as kube_config

        return kube_config.new_client_from_config(str(self.admin_kubeconfig))

    def chart_objects(self) -> list[dict[str, Any]]:
        values = json.loads(json.dumps(self.chart_values))
        scheduler_values = values.setdefault("scheduler", {})
        scheduler_values.setdefault("urlPrefix", self.extender_url or "http://127.0.0.1:1")
        return rendered_objects(render_chart(CHART_DIR, values, namespace=NAMESPACE))

    def _install_chart_access(self) -> None:
        """The chart's ServiceAccount, ClusterRole and binding, applied as the chart renders them,
        and a kubeconfig holding a token of that ServiceAccount."""
        from kubernetes import client
        from kubernetes.utils import create_from_dict

        api = self.api()
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        for obj in self.chart_objects():
            if obj["kind"] in {
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            }:
                create_from_dict(api, obj, namespace=NAMESPACE)
        token = client.CoreV1Api(api).create_namespaced_service_account_token(
            SERVICE_ACCOUNT,
            NAMESPACE,
            {"spec": {"expirationSeconds": TOKEN_TTL_S}},
        )
        self.extender_token = token.status.token
        self.extender_kubeconfig = self._write_kubeconfig("phalanx", {"token": token.status.token})

    def _chart_config(self, configmap: str, key: str) -> dict[str, Any]:
        for obj in self.chart_objects():
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == configmap:
                return yaml.safe_load(obj["data"][key])
        raise ControlPlaneError(f"the chart renders no ConfigMap {configmap} with key {key}")

    def _extender_settings(
        self, port: int, override: dict[str, Any] | None, api_url: str = ""
    ) -> Path:
        settings = self._chart_config(SERVE_CONFIGMAP, SERVE_CONFIG_KEY)
        settings = merge_values(settings, self.serve_settings)
        settings = merge_values(settings, override or {})
        settings["listen"] = {"host": "127.0.0.1", "port": port}
        kubeconfig_path = self.extender_kubeconfig
        if api_url:  # the same token and CA, another server: a proxy in front of the apiserver
            user = {"token": self.extender_token}
            kubeconfig_path = self._write_kubeconfig(f"phalanx-via-{port}", user, api_url)
        settings.setdefault("kube", {})["kubeconfig"] = str(kubeconfig_path)
        config_path = self.workdir / f"phalanx-config-{port}.yaml"
        config_path.write_text(yaml.safe_dump(settings))
        return config_path

    def start_extender(
        self, settings_override: dict[str, Any] | None = None, api_url: str = ""
    ) -> None:
        """(Re)starts one ``phalanx serve`` with the chart's settings on the extender's port;
        with ``api_url`` its kubeconfig names that server (an :class:`ApiFaultProxy`) instead
        of the apiserver."""
        self.stop_extender()
        single = merge_values({"leaderElection": {"enabled": False}}, settings_override or {})
        config_path = self._extender_settings(self.extender_port, single, api_url)
        phalanx = self._process(
            "phalanx", [sys.executable, "-m", "phalanx", "serve", "--config", str(config_path)]
        )
        phalanx.start()
        wait_until(
            "waiting for phalanx serve's /readyz",
            lambda: is_ready(self.extender_port),
            START_TIMEOUT_S,
            phalanx,
        )

    def start_replicas(
        self, count: int, settings_override: dict[str, Any] | None = None
    ) -> list[Process]:
        """``count`` replicas with leader election (identities ``phalanx-0``...), behind a
        Service stand-in on the extender's port; returns once one of them leads."""
        from tests.cluster.service_proxy import ServiceProxy

        self.stop_extender()
        replicas: list[Process] = []
        backends: list[tuple[str, int]] = []
        for i in range(count):
            name, port = f"phalanx-{i}", free_port()
            election = {"leaderElection": {"enabled": True, "identity": name}}
            config_path = self._extender_settings(
                port, merge_values(settings_override or {}, election)
            )
            replica = self._process(
                name, [sys.executable, "-m", "phalanx", "serve", "--config", str(config_path)]
            )
            replica.start()
            replicas.append(replica)
            backends.append((name, port))
        self.service = ServiceProxy(self.extender_port, backends)
        self.service.start()
        self.replica_ports = dict(backends)
        wait_until(
            "waiting for a replica to lead",
            lambda: self.service.ready_backends(),
            START_TIMEOUT_S,
        )
        return replicas

    def api_fault_proxy(self) -> ApiFaultProxy:
        """A started fault-injecting proxy in front of the apiserver, serving the harness CA's
        ``api_proxy`` certificate; pass its ``url`` to ``start_extender``; ``stop()`` it."""
        assert self.pki is not None
        proxy = ApiFaultProxy(
            self.apiserver_url,
            self.pki.ca.cert,
            self.pki.api_proxy.cert,
            self.pki.api_proxy.key,
            free_port(),
        )
        proxy.start()
        return proxy

    def leader(self) -> str | None:
        """The replica that answers ready now (the leader), by name."""
        ready = [name for name, port in self.replica_ports.items() if is_ready(port)]
        return ready[0] if len(ready) == 1 else None

    def stop_extender(self) -> None:
        for name in [n for n in self.processes if n.startswith("phalanx")]:
            self.processes[name].stop()
        service = getattr(self, "service", None)
        if service is not None:
            service.stop()
            self.service = None

    def kill_extender(self) -> None:
        """SIGKILL ``phalanx serve``, as a crash or an OOM kill would."""
        process = self.processes.get("phalanx")
        if process is not None:
            process.kill()

    def stop_scheduler(self) -> None:
        process = self.processes.get("kube-scheduler")
        if process is not None:
            process.stop()

    def start_scheduler(
        self, *, with_extender: bool | None = None, feature_gates: str | None = None
    ) -> None:
        """(Re)starts kube-scheduler; ``with_extender=False`` drops the chart's extender entry
        (the same scheduler as a baseline); ``feature_gates=""`` runs it with the release's
        default gates (the scenarios turn ``GenericWorkload`` on for the native gang API)."""
        if with_extender is not None:
            self.with_extender = with_extender
        if feature_gates is not None:
            self.scheduler_feature_gates = feature_gates
        previous = self.processes.get("kube-scheduler")
        if previous is not None:
            previous.stop()
        assert self.pki is not None
        sched_kubeconfig = self._write_kubeconfig(
            "scheduler",
            {
                "client-certificate": str(self.pki.scheduler.cert),
                "client-key": str(self.pki.scheduler.key),
            },
        )
        config = self._chart_config(SCHEDULER_CONFIGMAP, SCHEDULER_CONFIG_KEY)
        config["clientConnection"]["kubeconfig"] = str(sched_kubeconfig)
        config["leaderElection"] = {"leaderElect": False}
        if not self.with_extender:
            config.pop("extenders", None)
        config_path = self.workdir / "scheduler-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.scheduler_config = config
        scheduler = Process(
            "kube-scheduler",
            [
                str(self.binaries.path("kube-scheduler")),
                f"--config={config_path}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--feature-gates={self.scheduler_feature_gates}",
                "--v=2",
            ],
            self.workdir / "logs" / "kube-scheduler.log",
        )
        self.processes["kube-scheduler"] = scheduler
        start_offset = scheduler.log_path.stat().st_size if scheduler.log_path.exists() else 0
        scheduler.start()
        wait_until(
            "waiting for kube-scheduler's caches to sync",
            lambda: SCHEDULER_READY_LINE in scheduler.log_path.read_text()[start_offset:],
            START_TIMEOUT_S,
            scheduler,
        )


@contextlib.contextmanager
def running(
    binaries: ControlPlaneBinaries, workdir: Path, **options: Any
) -> Iterator[ControlPlane]:
    plane = ControlPlane(binaries, workdir, **options)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
