"""The shipped deployment files agree with the contract and with the code."""

from __future__ import annotations

from pathlib import Path

import yaml
from phalanx.extender.config import parse_config
from phalanx.policies.registry import get_preemption_policy, get_queue_policy, get_scorer

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def scheduler_configs() -> list[dict]:
    return [
        docs(DEPLOY / "manifests" / "scheduler-config.yaml")[0],
        docs(DEPLOY / "kind" / "scheduler-config.yaml")[0],
    ]


def test_scheduler_configuration_has_the_extender_entry():
    for cfg in scheduler_configs():
        assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
        assert "percentageOfNodesToScore" not in cfg, "kube-scheduler's own default"
        (ext,) = cfg["extenders"]
        assert ext["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}]
        assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False
        assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]) == (
            "filter",
            "prioritize",
            "bind",
            "preempt",
        )
        assert ext["weight"] > 0


def test_rendered_manifests_are_complete_and_least_privilege():
    objects = docs(DEPLOY / "manifests" / "phalanx.yaml")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for wanted in [
        ("Deployment", "phalanx-extender"),
        ("Service", "phalanx-extender"),
        ("ServiceAccount", "phalanx-extender"),
        ("ClusterRole", "phalanx-extender"),
        ("ClusterRoleBinding", "phalanx-extender"),
        ("DaemonSet", "phalanx-topology-discovery"),
        ("ConfigMap", "phalanx-extender"),
    ]:
        assert wanted in kinds
    role = next(
        o for o in objects if o["kind"] == "ClusterRole" and "extender" in o["metadata"]["name"]
    )
    verbs = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("pods/binding", "create") in verbs and ("podgroups", "watch") in verbs
    assert not {v for _, v in verbs} & {"delete", "update", "*", "escalate"}
    assert ("pods", "patch") not in verbs and ("nodes", "patch") not in verbs


def test_shipped_serve_config_parses_and_names_real_policies():
    objects = docs(DEPLOY / "manifests" / "phalanx.yaml")
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    cfg = parse_config(yaml.safe_load(cm["data"]["serve.yaml"]), "serve.yaml")
    values = yaml.safe_load((DEPLOY / "helm" / "phalanx" / "values.yaml").read_text())
    assert cfg.port == values["port"]
    assert cfg.policies.queue == values["config"]["policies"]["queue"]
    get_queue_policy(cfg.policies.queue)
    get_scorer(cfg.policies.scorer)
    get_preemption_policy(cfg.policies.preemption)


def test_chart_has_every_template():
    templates = {p.name for p in (DEPLOY / "helm" / "phalanx" / "templates").iterdir()}
    assert {
        "deployment.yaml",
        "service.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "configmap.yaml",
        "scheduler-config.yaml",
        "discovery-daemonset.yaml",
    } <= templates
