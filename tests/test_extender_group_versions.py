"""PodGroup versions found by discovery: the native gang API is read at ``v1beta1`` where the
apiserver serves it (Kubernetes 1.37), at ``v1alpha2`` where only that is served (1.36), and a
cluster serving neither leaves the native gangs waiting with the reason."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.gangs import native
from phalanx.extender.group_versions import ServedGroupKind

from tests.fake_apiserver import FakeApiServer, kube_pod, wait_until
from tests.test_extender_e2e import make_nodes, running

BETA = "/apis/scheduling.k8s.io/v1beta1/podgroups"
ALPHA = "/apis/scheduling.k8s.io/v1alpha2/podgroups"


def native_group(name: str, min_count: int) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {"schedulingPolicy": {"gang": {"minCount": min_count}}},
    }


def native_pod(name: str, group: str) -> dict[str, object]:
    pod = kube_pod(name)
    pod["spec"]["schedulingGroup"] = {"podGroupName": group}
    return pod


def served(api: FakeApiServer, *paths: str) -> None:
    from tests.fake_apiserver import GROUP_RESOURCES

    api.served_groups = {r for p, r in GROUP_RESOURCES.items() if p in paths or "x-k8s" in p}


@pytest.mark.parametrize(
    ("paths", "version"),
    [((BETA, ALPHA), "v1beta1"), ((ALPHA,), "v1alpha2"), ((BETA,), "v1beta1"), ((), None)],
)
def test_discovery_prefers_v1beta1_and_accepts_v1alpha2(paths, version):
    api = FakeApiServer()
    served(api, *paths)
    with api.serve() as url:
        custom = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=url)))
        lister = ServedGroupKind(custom, native.KIND)
        assert lister.discover() == version
        if version is None:
            with pytest.raises(ApiException) as err:
                lister(_preload_content=False)
            assert err.value.status == 404
            assert lister.group_version is None
        else:
            lister(_preload_content=False)
            assert lister.group_version == f"scheduling.k8s.io/{version}"


@pytest.mark.parametrize("path", [BETA, ALPHA])
def test_native_gang_is_bound_whole_at_the_served_version(path):
    api = FakeApiServer()
    served(api, path)
    make_nodes(api, 4)
    with running(api) as c:
        api.add_group(path, native_group("ng", 3))
        names = [f"ng-{i}" for i in range(3)]
        for name in names:
            api.add_pod(native_pod(name, "ng"))
        c.sync()
        wait_until(lambda: ("native", "ml", "ng") in c.backend.planner.groups, what="the group")
        attempts = c.schedule_all(names)
        assert all(a.bound for a in attempts.values()), attempts
        assert len({a.node for a in attempts.values()}) == 3
        version = path.split("/")[3]
        assert c.backend.debug_extra()["group_versions"]["native"] == (
            f"scheduling.k8s.io/{version}"
        )


def test_native_gang_waits_with_the_reason_when_no_version_is_served():
    api = FakeApiServer()
    served(api)
    make_nodes(api, 2)
    with running(api) as c:
        api.add_pod(native_pod("lone-0", "lone"))
        c.sync()
        attempt = c.scheduler.schedule("ml", "lone-0")
        assert not attempt.bound
        assert "PodGroup ml/lone (scheduling.k8s.io) not found" in next(
            iter(attempt.reasons.values())
        )
        assert c.backend.debug_extra()["group_versions"]["native"] is None
