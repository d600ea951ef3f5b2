"""``phalanx serve``: run the kube-scheduler extender webhook.

Against the cluster (``--config FILE``; in-cluster service account or ``kube.kubeconfig``), or
with ``--cluster PRESET|FILE --dry-run`` against a described cluster, binds recorded instead of
sent (for trying Phalanx without a cluster, demos and load tests).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import NoReturn

import click
from phalanx.extender.app import AppOptions, Backend, ExtenderApp
from phalanx.extender.config import MAX_PORT, MIN_PORT, ConfigError, ServeConfig, load_config
from phalanx.extender.decision_log import configure_logging
from phalanx.extender.planner import Planner
from phalanx.policies.registry import PolicyOptionError, UnknownPolicyError
from phalanx.topology.model import Cluster

EXIT_BAD_INPUT = 2


def _fail(message: str) -> NoReturn:
    """Report bad input the way every phalanx command does: one ``error: ...`` line per
    problem, exit status 2, no traceback."""
    for line in message.splitlines():
        click.echo(f"error: {line.strip()}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command(name="serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Settings file.")
@click.option("--cluster", help="PRESET[:NODES] or a cluster/Node-list file (needs --dry-run).")
@click.option("--dry-run", is_flag=True, help="Record binds instead of sending them.")
@click.option("--host", help="Listen address (overrides the settings file).")
@click.option("--port", type=int, help="Listen port (overrides the settings file).")
@click.option("--echo", is_flag=True, help="Also serve /echo, the load-test baseline.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text or one JSON object each (overrides logFormat).",
)
def command(
    config_path: str | None,
    cluster: str | None,
    dry_run: bool,
    host: str | None,
    port: int | None,
    echo: bool,
    log_format: str | None,
) -> None:
    """Run the kube-scheduler extender webhook (filter, prioritize, bind, preempt)."""
    problems: list[str] = []
    if port is not None and not MIN_PORT <= port <= MAX_PORT:
        problems.append(f"--port {port}: outside {MIN_PORT}..{MAX_PORT}")
    if dry_run != (cluster is not None):
        problems.append("--dry-run and --cluster go together: --cluster PRESET|FILE --dry-run")
    config = ServeConfig()
    if config_path:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        _fail("\n".join(problems))
    if host is not None:
        config = dataclasses.replace(config, host=host)
    if port is not None:
        config = dataclasses.replace(config, port=port)
    if log_format is not None:
        config = dataclasses.replace(config, log_format=log_format)
    configure_logging(config.log_format)
    from phalanx.extender.runtime import DryRunBackend, planner_factory

    try:
        make_planner = planner_factory(config)
    except (UnknownPolicyError, PolicyOptionError) as exc:
        _fail(f"{config_path or 'policies'}: {exc}")
    if cluster is not None:
        from phalanx.topology.sources import load_cluster

        try:
            described = load_cluster(cluster, config.kube.topology_labels)
            backend: Backend = DryRunBackend(make_planner(described))
        except (ValueError, OSError) as exc:
            _fail(f"--cluster {cluster}: {exc}")
    else:
        backend = _kube_backend(config, make_planner)
    options = AppOptions(
        max_body_bytes=config.max_body_bytes,
        path_prefix=config.path_prefix,
        bind_workers=config.bind_workers,
        bind_barrier_s=config.bind_barrier_s,
        echo=echo,
    )
    from phalanx.extender.server import serve
    from phalanx.extender.warmup import warm_up

    warm_up(make_planner)
    serve(ExtenderApp(backend, options), config)


def _kube_backend(config: ServeConfig, make_planner: Callable[[Cluster], Planner]) -> Backend:
    from kubernetes import client
    from kubernetes import config as kube_config
    from phalanx.extender.kube_backend import KubeBackend

    try:
        if config.kube.kubeconfig:
            api_client = kube_config.new_client_from_config(
                config.kube.kubeconfig, context=config.kube.context
            )
        else:
            kube_config.load_incluster_config()
            api_client = client.ApiClient()
    except (kube_config.ConfigException, OSError) as exc:
        _fail(f"cannot reach the Kubernetes API: {exc} (outside a cluster, set kube.kubeconfig)")
    # with leader election only the leader writes status and events (rebuild_plans turns it on)
    kube = KubeBackend(
        api_client, config.kube, make_planner, reporting=not config.leader_election.enabled
    )
    if not config.leader_election.enabled:
        kube.start()
        return kube
    from phalanx.extender.leadership import LeaderElectedBackend

    elected = LeaderElectedBackend(kube, api_client, config.leader_election)
    elected.start()
    return elected
