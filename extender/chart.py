"""Render the Helm chart in ``deploy/helm/phalanx`` with Helm itself, and write the plain
manifests derived from it.

The rendering is Helm's own (the Go SDK bundled by ``helm-python-sdk``, a client-side dry-run
install, which is what ``helm template`` does), so the committed manifests in
``deploy/manifests`` are exactly what ``helm template`` prints and cannot drift from the chart.

.. code-block:: sh

    python -m phalanx.extender.chart deploy/helm/phalanx                 # print, as helm template
    python -m phalanx.extender.chart deploy/helm/phalanx --set tls.enabled=true --values my.yaml
    python -m phalanx.extender.chart deploy/helm/phalanx --out deploy/manifests   # regenerate
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import yaml

DEFAULT_RELEASE = "phalanx"
DEFAULT_NAMESPACE = "phalanx-system"
SCHEDULER_CONFIGMAP = "phalanx-scheduler-config"
SCHEDULER_CONFIG_KEY = "scheduler-config.yaml"
MANIFESTS_FILE = "phalanx.yaml"
"""The chart's objects, in Helm's install order."""
SCHEDULER_CONFIG_FILE = "scheduler-config.yaml"
"""kube-scheduler's ``--config`` file, taken out of its ConfigMap."""


class ChartError(ValueError):
    """The chart, its values or the Helm library failed; the message says which and why."""


def render_chart(
    chart_dir: str | Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """The chart's manifests as ``helm template RELEASE CHART -n NAMESPACE`` prints them.

    No cluster is contacted and no release is stored (a client-side dry-run install with
    in-memory release storage).
    """
    helm = _helm()
    try:
        helm.validate_release_name(release)
        with helm.Config(storage_driver="memory", namespace=namespace) as config:
            summary = config.install(
                str(chart_dir), release, values, namespace=namespace, dry_run="client"
            )
    except helm.HelmError as exc:
        raise ChartError(f"{chart_dir}: {exc}") from None
    return str(summary["manifest"])


def _helm() -> ModuleType:
    """Helm's Go SDK, which only rendering needs (it is not a dependency of the server)."""
    try:
        import helm_python
    except ImportError as exc:
        raise ChartError(
            f"rendering the chart needs helm-python-sdk ({exc}): pip install -e '.[test]'"
        ) from None
    return helm_python


def rendered_objects(manifest: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of a rendering, in its order (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def scheduler_config(manifest: str) -> str:
    """kube-scheduler's configuration file, as the chart ships it in its ConfigMap."""
    for obj in rendered_objects(manifest):
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == SCHEDULER_CONFIGMAP:
            return str(obj["data"][SCHEDULER_CONFIG_KEY])
    raise ChartError(f"the rendering has no ConfigMap {SCHEDULER_CONFIGMAP}")


def manifest_files(
    manifest: str, command: str, namespace: str = DEFAULT_NAMESPACE
) -> dict[str, str]:
    """The plain-manifest files (name -> text) of one rendering, each headed by the command
    that produced it."""
    objects_header = (
        f"# Rendered from the Helm chart by `{command}`\n"
        "# (Helm's own rendering, as `helm template` prints it). The namespace is not part of\n"
        f"# the chart: create it first (kubectl create namespace {namespace}).\n"
    )
    scheduler_header = (
        "# kube-scheduler --config file: the extender entry for Phalanx. The\n"
        f"# {SCHEDULER_CONFIG_KEY} key of the {SCHEDULER_CONFIGMAP} ConfigMap rendered by\n"
        f"# `{command}`.\n"
    )
    return {
        MANIFESTS_FILE: objects_header + manifest,
        SCHEDULER_CONFIG_FILE: scheduler_header + scheduler_config(manifest),
    }


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested maps merged key by key, ``override`` winning (Helm's order for -f then --set)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def _user_values(values_file: str | None, sets: tuple[str, ...]) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if values_file is not None:
        try:
            loaded = yaml.safe_load(Path(values_file).read_text())
        except OSError as exc:
            raise ChartError(f"{values_file}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ChartError(f"{values_file}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ChartError(
                f"{values_file}: values must be a mapping, not {type(loaded).__name__}"
            )
        values = loaded or {}
    if sets:
        helm = _helm()
        for expression in sets:
            try:
                values = merge_values(values, helm.parse_set_string(expression))
            except helm.HelmError as exc:
                raise ChartError(f"--set {expression}: {exc}") from None
    return values or None


def _invocation(
    chart_dir: str,
    values_file: str | None,
    sets: tuple[str, ...],
    release: str,
    namespace: str,
    out_dir: str,
) -> str:
    """The command line that reproduces a rendering, for the header of the files it writes."""
    words = ["python", "-m", "phalanx.extender.chart", chart_dir]
    if values_file is not None:
        words += ["--values", values_file]
    for expression in sets:
        words += ["--set", expression]
    if release != DEFAULT_RELEASE:
        words += ["--release", release]
    if namespace != DEFAULT_NAMESPACE:
        words += ["--namespace", namespace]
    return shlex.join([*words, "--out", out_dir])


@click.command(name="chart")
@click.argument("chart_dir", type=click.Path(file_okay=False))
@click.option("--values", "values_file", type=click.Path(dir_okay=False), help="Values file.")
@click.option("--set", "sets", multiple=True, help="Helm --set expression (repeatable).")
@click.option("--release", default=DEFAULT_RELEASE, show_default=True, help="Release name.")
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write the files here.")
def command(
    chart_dir: str,
    values_file: str | None,
    sets: tuple[str, ...],
    release: str,
    namespace: str,
    out_dir: str | None,
) -> None:
    """Render CHART_DIR with Helm; print the manifests, or write the plain-manifest files."""
    try:
        manifest = render_chart(
            chart_dir, _user_values(values_file, sets), release=release, namespace=namespace
        )
        if out_dir is None:
            click.echo(manifest, nl=False)
            return
        invocation = _invocation(chart_dir, values_file, sets, release, namespace, out_dir)
        for name, text in manifest_files(manifest, invocation, namespace).items():
            (Path(out_dir) / name).write_text(text)
    except ChartError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"error: {out_dir}: cannot write: {exc.strerror}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    command()
