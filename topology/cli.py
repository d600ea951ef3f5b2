"""``phalanx topology show|validate|discover|export``."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from pathlib import Path
from typing import NoReturn

import click
from phalanx.topology.clusterfile import ClusterFileError, ProblemEntry, load_cluster_file
from phalanx.topology.discovery import discover as discover_document
from phalanx.topology.discovery import publish_annotation
from phalanx.topology.kube import AUTO, LEVEL_LABEL_SETS
from phalanx.topology.kube_export import (
    DEFAULT_LABEL_SET,
    dump_node_list,
    node_list,
    round_trip_differences,
)
from phalanx.topology.nvml_backend import DiscoveryError, PynvmlBackend, RecordedBackend, record
from phalanx.topology.report import cluster_summary, format_summary
from phalanx.topology.sources import load_cluster

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Report bad input the way every phalanx command does: ``error: ...``, exit status 2."""
    for line in message.splitlines():
        click.echo(f"error: {line.strip()}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _fail_cluster_file(exc: ClusterFileError) -> NoReturn:
    if len(exc.problems) == 1:
        fail(str(exc))  # one problem, one line (naming the file)
    fail("\n".join([f"{exc.source}: {len(exc.problems)} problems", *exc.problems]))


@click.group("topology")
def command() -> None:
    """Inspect, validate and discover cluster topologies."""


@command.command()
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--labels",
    type=click.Choice([AUTO, *LEVEL_LABEL_SETS]),
    default=AUTO,
    show_default=True,
    help="Topology labels of a Node list file.",
)
@click.option("--nodes", "names_only", is_flag=True, help="List the node names, one per line.")
def show(spec: str, as_json: bool, labels: str, names_only: bool) -> None:
    """Summarise a cluster: SPEC is a preset (superpod-h100:256), a cluster file, or a
    Kubernetes NodeList saved with ``kubectl get nodes -o json``."""
    try:
        cluster = load_cluster(spec, labels)
        summary = {} if names_only else cluster_summary(cluster.compile())
    except ClusterFileError as exc:
        _fail_cluster_file(exc)
    except ValueError as exc:
        fail(str(exc))
    if names_only:
        click.echo("\n".join(n.name for n in cluster.nodes))
    elif as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_summary(summary))


@command.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object: ok, counts and levels, or every problem with its line and "
    "field (exit status 2).",
)
def validate(file: str, as_json: bool) -> None:
    """Check a cluster file and report every problem with its line and field."""
    try:
        cluster = load_cluster_file(file)
        cluster.compile()
    except (ClusterFileError, ValueError) as exc:
        entries = (
            exc.entries if isinstance(exc, ClusterFileError) else [ProblemEntry(None, "", str(exc))]
        )
        if as_json:  # for CI checks and editors: structured, so nobody parses error lines
            problems = [dataclasses.asdict(e) for e in entries]
            click.echo(json.dumps({"file": file, "ok": False, "problems": problems}, indent=2))
            sys.exit(EXIT_BAD_INPUT)
        if isinstance(exc, ClusterFileError):
            _fail_cluster_file(exc)
        fail(f"{file}: {exc}")
    if as_json:
        result = {"file": file, "ok": True, "nodes": len(cluster.nodes)}
        result |= {"gpus": cluster.gpu_count, "levels": cluster.level_names, "problems": []}
        click.echo(json.dumps(result, indent=2))
        return
    levels = ", ".join(cluster.level_names)
    click.echo(f"{file}: ok: {len(cluster.nodes)} nodes, {cluster.gpu_count} GPUs, levels {levels}")


@command.command()
@click.option(
    "--replay",
    type=click.Path(dir_okay=False),
    help="Replay recorded NVML answers (e.g. topology/fixtures/nvml-dgx-h100.json) instead of "
    "asking the local driver.",
)
@click.option(
    "--record",
    "record_to",
    type=click.Path(dir_okay=False),
    help="Also save the raw NVML answers to this file, for --replay.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Write the document to this file."
)
@click.option(
    "--publish",
    is_flag=True,
    help="Write the document to this node's phalanx.io/gpu-topology annotation.",
)
@click.option("--node-name", envvar="NODE_NAME", help="Node to annotate (default: $NODE_NAME).")
def discover(
    replay: str | None,
    record_to: str | None,
    output: str | None,
    publish: bool,
    node_name: str | None,
) -> None:
    """Read this node's GPUs, NVLinks, PCIe tree, NUMA nodes and NICs (NVML and sysfs) and print
    the discovery document. Meant to run on each GPU node, e.g. as a DaemonSet."""
    if publish and not node_name:
        fail("--publish needs --node-name or the NODE_NAME environment variable")
    try:
        backend = RecordedBackend.load(replay) if replay else PynvmlBackend()
        try:
            doc = discover_document(backend)
            if record_to:
                host = node_name or platform.node()
                recording = record(backend, description=f"recorded by phalanx on {host}")
                Path(record_to).write_text(json.dumps(recording, indent=1) + "\n")
        finally:
            backend.close()
        text = json.dumps(doc, indent=2)
        if output:
            Path(output).write_text(text + "\n")
        else:
            click.echo(text)
        if publish:
            publish_annotation(doc, node_name)
    except DiscoveryError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename}: {exc.strerror}")


@command.command()
@click.argument("spec")
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), help="Write to this file, not stdout."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "yaml"]),
    help="Output format; default json, or yaml when --out ends in .yaml/.yml.",
)
@click.option(
    "--labels",
    type=click.Choice([AUTO, *LEVEL_LABEL_SETS]),
    default=AUTO,
    show_default=True,
    help="Topology labels of a Node list SPEC.",
)
@click.option(
    "--write-labels",
    type=click.Choice(list(LEVEL_LABEL_SETS)),
    default=DEFAULT_LABEL_SET,
    show_default=True,
    help="Label set the fabric levels are written in.",
)
def export(spec: str, out: str | None, fmt: str | None, labels: str, write_labels: str) -> None:
    """Write the cluster SPEC as a Kubernetes NodeList whose nodes load back as the same
    cluster (GFD labels, fabric labels, the phalanx.io/gpu-topology annotation, status)."""
    try:
        cluster = load_cluster(spec, labels)
        doc = node_list(cluster, write_labels)
        notes = round_trip_differences(cluster, doc)
    except ClusterFileError as exc:
        _fail_cluster_file(exc)
    except ValueError as exc:
        fail(str(exc))
    if fmt is None:
        fmt = "yaml" if out and Path(out).suffix in (".yaml", ".yml") else "json"
    text = dump_node_list(doc, fmt)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        Path(out).write_text(text)
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
