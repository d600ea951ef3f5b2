"""Fixtures for the ``cluster`` scenarios: one real control plane per test session (built from
source on first use), and per scenario a fresh set of Nodes, a fresh ``phalanx serve`` and a
namespace of its own.

On a machine without Go the scenarios skip with that reason; where Go is present a build
failure fails them (it is never replaced by an emulation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.build import BuildError, ensure_built, go_command
from tests.cluster.harness import ControlPlane
from tests.cluster.objects import (
    delete_pods,
    ensure_namespace,
    install_crds,
    node_objects,
    set_nodes,
)

LOG_TAIL_LINES = 40
_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if go_command() is None:
        pytest.skip("no Go toolchain on PATH: the real control plane is built from Go modules")
    try:
        binaries = ensure_built()
    except BuildError as exc:
        pytest.fail(f"cannot build the control plane: {exc}", pytrace=False)
    plane = ControlPlane(binaries, tmp_path_factory.mktemp("controlplane"))
    try:
        plane.start()
        install_crds(plane.api())
        yield plane
    finally:
        plane.stop()


class Scenario:
    """One scenario's cluster: its nodes, its namespace, and the API as administrator."""

    def __init__(self, plane: ControlPlane, spec: str, namespace: str) -> None:
        self.plane = plane
        self.spec = spec
        self.namespace = namespace
        self.api = plane.api()
        self.nodes = node_objects(spec)

    @property
    def node_names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.nodes]


@pytest.fixture
def kube_cluster(
    control_plane: ControlPlane, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Scenario]]:
    """``kube_cluster(SPEC, serve={...}, api_url=...)``: puts SPEC's nodes in, restarts
    ``phalanx serve`` (the chart's settings, merged with ``serve``; talking to the apiserver
    through ``api_url`` when given, e.g. an API fault proxy) and returns the scenario."""
    made: list[Scenario] = []

    def make(spec: str, serve: dict[str, Any] | None = None, api_url: str = "") -> Scenario:
        namespace = f"scenario-{next(_namespaces)}"
        scenario = Scenario(control_plane, spec, namespace)
        ensure_namespace(scenario.api, namespace)
        set_nodes(scenario.api, scenario.nodes)
        control_plane.start_extender(serve, api_url)
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        delete_pods(scenario.api, scenario.namespace)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """A failing scenario's report carries the last lines of every component's log (the whole
    logs stay in the session's temporary folder)."""
    outcome = yield
    report = outcome.get_result()
    plane = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(plane, ControlPlane):
        for name, process in plane.processes.items():
            report.sections.append(
                (f"{name} log ({Path(process.log_path)})", process.log_tail(LOG_TAIL_LINES))
            )
