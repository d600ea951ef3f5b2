"""The Helm chart rendered by Helm itself (the Go SDK in helm-python-sdk): it renders, its
objects meet the extender contract, and the committed plain manifests are that rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from click.testing import CliRunner
from phalanx.extender.chart import (
    MANIFESTS_FILE,
    SCHEDULER_CONFIG_FILE,
    ChartError,
    command,
    manifest_files,
    render_chart,
    rendered_objects,
    scheduler_config,
)
from phalanx.extender.config import parse_config

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "phalanx"
MANIFESTS = REPO / "deploy" / "manifests"
NAMESPACE = "phalanx-system"
REGENERATE = "python -m phalanx.extender.chart deploy/helm/phalanx --out deploy/manifests"
KIND_VALUES = {
    "service": {"clusterIP": "10.96.0.88"},
    "discovery": {"enabled": False},
    "scheduler": {"urlPrefix": "http://10.96.0.88:8888"},
}
"""The values of the kind guide's `helm install`."""
SCHEDULER_CLIENT_TLS = {
    "certFile": "/etc/kubernetes/phalanx/client.crt",
    "keyFile": "/etc/kubernetes/phalanx/client.key",
    "caFile": "/etc/kubernetes/phalanx/ca.crt",
}
MTLS_VALUES = {
    "replicas": 1,
    "tls": {"enabled": True, "requireClientCert": True},
    "scheduler": {"tlsConfig": SCHEDULER_CLIENT_TLS},
}


@pytest.fixture(scope="module")
def default_manifest() -> str:
    return render_chart(CHART)


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rule_grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def extender_entry(manifest: str) -> dict[str, Any]:
    cfg = yaml.safe_load(scheduler_config(manifest))
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    assert "percentageOfNodesToScore" not in cfg, "kube-scheduler's own (adaptive) default"
    (entry,) = cfg["extenders"]
    return entry


def test_chart_lints_clean_with_helm():
    for values in (None, MTLS_VALUES, KIND_VALUES):
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_rendering_has_every_object(default_manifest):
    objects = by_kind(rendered_objects(default_manifest))
    assert set(objects) == {
        ("ServiceAccount", "phalanx-extender"),
        ("ServiceAccount", "phalanx-discovery"),
        ("ConfigMap", "phalanx-extender"),
        ("ConfigMap", "phalanx-scheduler-config"),
        ("ClusterRole", "phalanx-extender"),
        ("ClusterRoleBinding", "phalanx-extender"),
        ("Role", "phalanx-extender-leader-election"),
        ("RoleBinding", "phalanx-extender-leader-election"),
        ("ClusterRole", "phalanx-discovery"),
        ("ClusterRoleBinding", "phalanx-discovery"),
        ("Service", "phalanx-extender"),
        ("Deployment", "phalanx-extender"),
        ("DaemonSet", "phalanx-topology-discovery"),
    }
    for (kind, _), obj in objects.items():
        if not kind.startswith("Cluster"):
            assert obj["metadata"]["namespace"] == NAMESPACE
    deployment = objects["Deployment", "phalanx-extender"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    serve = yaml.safe_load(objects["ConfigMap", "phalanx-extender"]["data"]["serve.yaml"])
    election = parse_config(serve, "serve.yaml").leader_election
    assert election.enabled and election.lease_duration_s <= 15
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in pod["containers"][0]["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert pod["serviceAccountName"] == "phalanx-extender"
    (container,) = pod["containers"]
    assert container["args"] == ["serve", "--config", "/etc/phalanx/serve.yaml"]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "webhook",
        "scheme": "HTTP",
    }
    service = objects["Service", "phalanx-extender"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 8888, "targetPort": "webhook"}]
    daemonset = objects["DaemonSet", "phalanx-topology-discovery"]
    ds_pod = daemonset["spec"]["template"]["spec"]
    assert ds_pod["serviceAccountName"] == "phalanx-discovery"
    assert ds_pod["initContainers"][0]["args"] == ["topology", "discover", "--publish"]
    assert ds_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_rbac_is_the_contracts_least_privilege(default_manifest):
    objects = by_kind(rendered_objects(default_manifest))
    read = ("get", "list", "watch")
    wanted = {
        *{("", resource, verb) for resource in ("nodes", "pods") for verb in read},
        ("", "pods/binding", "create"),
        ("", "bindings", "create"),
        ("", "pods/status", "patch"),  # nominatedNodeName of planned members
        ("", "pods/eviction", "create"),  # whole-gang preemption
        *{("policy", "poddisruptionbudgets", verb) for verb in read},  # honoured by it
        *{
            (group, "events", verb)
            for group in ("", "events.k8s.io")
            for verb in ("create", "patch")
        },
        *{
            (group, "podgroups", verb)
            for group in ("scheduling.x-k8s.io", "scheduling.volcano.sh", "scheduling.k8s.io")
            for verb in read
        },
        *{  # status written back in each dialect's fields
            (group, "podgroups/status", "patch")
            for group in ("scheduling.x-k8s.io", "scheduling.volcano.sh", "scheduling.k8s.io")
        },
    }
    assert rule_grants(objects["ClusterRole", "phalanx-extender"]) == wanted
    assert rule_grants(objects["ClusterRole", "phalanx-discovery"]) == {
        ("", "nodes", "get"),
        ("", "nodes", "patch"),
    }
    for name in ("phalanx-extender", "phalanx-discovery"):
        binding = objects["ClusterRoleBinding", name]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": name,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}
        ]


def test_scheduler_configuration_has_the_extender_entry(default_manifest):
    entry = extender_entry(default_manifest)
    assert entry["urlPrefix"] == f"http://phalanx-extender.{NAMESPACE}.svc:8888"
    assert (entry["filterVerb"], entry["prioritizeVerb"], entry["preemptVerb"]) == (
        "filter",
        "prioritize",
        "preempt",
    )
    assert entry["bindVerb"] == "bind"
    assert entry["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}]
    assert entry["nodeCacheCapable"] is True
    assert entry["ignorable"] is False
    assert entry["enableHTTPS"] is False
    assert "tlsConfig" not in entry


def test_serve_config_in_the_rendering_parses(default_manifest):
    objects = by_kind(rendered_objects(default_manifest))
    serve = yaml.safe_load(objects["ConfigMap", "phalanx-extender"]["data"]["serve.yaml"])
    cfg = parse_config(serve, "serve.yaml")
    assert cfg.port == 8888 and not cfg.tls.enabled


def test_committed_manifests_are_the_rendering(default_manifest):
    for name, text in manifest_files(default_manifest, REGENERATE).items():
        assert (MANIFESTS / name).read_text() == text, (
            f"deploy/manifests/{name} differs from the chart's rendering; run {REGENERATE}"
        )


def test_kind_scheduler_config_matches_the_kind_rendering():
    manifest = render_chart(CHART, KIND_VALUES)
    kind_file = yaml.safe_load((REPO / "deploy" / "kind" / "scheduler-config.yaml").read_text())
    assert kind_file == yaml.safe_load(scheduler_config(manifest))
    objects = by_kind(rendered_objects(manifest))
    assert objects["Service", "phalanx-extender"]["spec"]["clusterIP"] == "10.96.0.88"
    assert not any(name == "phalanx-discovery" for _, name in objects)
    assert ("DaemonSet", "phalanx-topology-discovery") not in objects


def test_one_replica_runs_without_leader_election():
    objects = by_kind(rendered_objects(render_chart(CHART, {"replicas": 1})))
    deployment = objects["Deployment", "phalanx-extender"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    serve = yaml.safe_load(objects["ConfigMap", "phalanx-extender"]["data"]["serve.yaml"])
    assert not parse_config(serve, "serve.yaml").leader_election.enabled


def test_a_standby_with_client_certificates_required_is_refused():
    with pytest.raises(ChartError, match="requireClientCert"):
        render_chart(CHART, {**MTLS_VALUES, "replicas": 2})


def test_tls_with_client_certificates_required():
    manifest = render_chart(CHART, MTLS_VALUES)
    objects = by_kind(rendered_objects(manifest))
    serve = yaml.safe_load(objects["ConfigMap", "phalanx-extender"]["data"]["serve.yaml"])
    cfg = parse_config(serve, "serve.yaml")
    assert cfg.tls.require_client_cert
    assert (cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.client_ca_file) == (
        "/tls/tls.crt",
        "/tls/tls.key",
        "/tls/ca.crt",
    )
    pod = objects["Deployment", "phalanx-extender"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "tls", "mountPath": "/tls", "readOnly": True} in container["volumeMounts"]
    assert {"name": "tls", "secret": {"secretName": "phalanx-tls"}} in pod["volumes"]
    # the kubelet presents no client certificate: its probes must not speak TLS to the server
    assert container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "webhook"}
    entry = extender_entry(manifest)
    assert entry["urlPrefix"] == f"https://phalanx-extender.{NAMESPACE}.svc:8888"
    assert entry["enableHTTPS"] is True
    assert entry["tlsConfig"] == SCHEDULER_CLIENT_TLS


def test_tls_without_client_certificates_keeps_http_probes():
    manifest = render_chart(CHART, {"tls": {"enabled": True}})
    objects = by_kind(rendered_objects(manifest))
    (container,) = objects["Deployment", "phalanx-extender"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert extender_entry(manifest)["enableHTTPS"] is True


def test_service_monitor_is_off_by_default_and_scrapes_the_service_when_on(default_manifest):
    assert not any(o["kind"] == "ServiceMonitor" for o in rendered_objects(default_manifest))
    values = {
        "tls": {"enabled": True},
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "prometheus"},
            "tlsConfig": {"ca": {"secret": {"name": "phalanx-tls", "key": "ca.crt"}}},
        },
    }
    objects = by_kind(rendered_objects(render_chart(CHART, values)))
    monitor = objects["ServiceMonitor", "phalanx-extender"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = objects["Service", "phalanx-extender"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == values["serviceMonitor"]["tlsConfig"]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"tls": {"requireClientCert": True}}, "tls.requireClientCert needs tls.enabled"),
        (
            {"tls": {"enabled": True, "requireClientCert": True}},
            "set scheduler.tlsConfig.certFile",
        ),
    ],
)
def test_settings_that_cannot_work_stop_the_rendering(values, reason):
    with pytest.raises(ChartError, match=reason):
        render_chart(CHART, values)


def test_cli_prints_and_writes_the_rendering(tmp_path, default_manifest):
    runner = CliRunner()
    printed = runner.invoke(command, [str(CHART)])
    assert printed.exit_code == 0 and printed.output == default_manifest
    out = runner.invoke(
        command, [str(CHART), "--set", "discovery.enabled=false", "--out", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    written = rendered_objects((tmp_path / MANIFESTS_FILE).read_text())
    assert ("DaemonSet", "phalanx-topology-discovery") not in by_kind(written)
    header = (tmp_path / SCHEDULER_CONFIG_FILE).read_text().splitlines()[2]
    assert "--set discovery.enabled=false" in header


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "tls.requireClientCert=true"], "tls.requireClientCert needs tls.enabled"),
        (["--values", "missing-values.yaml"], "missing-values.yaml: cannot read"),
    ],
)
def test_cli_reports_bad_input_without_a_traceback(args, message):
    result = CliRunner().invoke(command, [str(CHART), *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output


def test_cli_names_a_missing_chart(tmp_path):
    result = CliRunner().invoke(command, [str(tmp_path / "no-chart")])
    assert result.exit_code == 2 and result.output.startswith(f"error: {tmp_path / 'no-chart'}")


def test_the_bind_barrier_and_the_bind_fit_in_kube_schedulers_timeout(default_manifest):
    """A bind waits at its gang's barrier, then posts the Binding with retries: both inside
    kube-scheduler's extender httpTimeout, or kube-scheduler gives up on a bind that happens."""
    (entry,) = [extender_entry(default_manifest)]
    http_timeout_s = float(entry["httpTimeout"].rstrip("s"))
    objects = by_kind(rendered_objects(default_manifest))
    serve = yaml.safe_load(objects["ConfigMap", "phalanx-extender"]["data"]["serve.yaml"])
    assert serve["bindBarrierSeconds"] + serve["kube"]["bindTimeoutSeconds"] < http_timeout_s
