"""``deploy/Dockerfile`` agrees with the Helm chart that runs it.

No Docker engine exists where these tests run, so the image itself is never built here; what
can be checked is the contract between the two files: the image name and tag, the user, the
entrypoint with the chart's arguments, every source folder the package needs, and a numba cache
on the one writable mount of a read-only root filesystem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import yaml

from phalanx.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
VALUES = ROOT / "deploy" / "helm" / "phalanx" / "values.yaml"
MANIFESTS = ROOT / "deploy" / "manifests" / "phalanx.yaml"
"""The chart's default rendering (``test_extender_helm_chart`` keeps it equal to Helm's)."""
BASE_IMAGE = "python:3.11-slim"
NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def single(keyword: str) -> str:
    (value,) = [rest for k, rest in instructions() if k == keyword]
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def objects(kind: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    return [d for d in docs if d["kind"] == kind]


def chart_containers() -> list[dict]:
    """Every container and init container of the chart's Deployment and DaemonSet."""
    pods = [w["spec"]["template"]["spec"] for w in objects("Deployment") + objects("DaemonSet")]
    return [c for pod in pods for c in pod["containers"] + pod.get("initContainers", [])]


def test_the_image_is_the_one_the_chart_names_on_the_agreed_base():
    image = yaml.safe_load(VALUES.read_text())["image"]
    tag = f"{image['repository']}:{image['tag']}"
    assert single("FROM") == BASE_IMAGE
    assert f"docker build -f deploy/Dockerfile -t {tag} ." in DOCKERFILE.read_text()
    assert (
        f"docker build -f deploy/Dockerfile -t {tag} ." in (ROOT / "docs/extender.md").read_text()
    )
    assert tag in {c["image"] for c in chart_containers()}


def test_entrypoint_runs_the_charts_arguments_and_defaults_to_serve():
    assert json.loads(single("ENTRYPOINT")) == ["phalanx"]
    assert json.loads(single("CMD")) == ["serve"]
    ours = [c for c in chart_containers() if c["image"].startswith("phalanx:")]
    assert {c["args"][0] for c in ours} == {"serve", "topology"}
    assert all(c["args"][0] in SUBCOMMANDS for c in ours)


def test_the_image_user_is_the_charts_and_every_source_folder_is_copied():
    (deployment,) = objects("Deployment")
    assert single("USER") == str(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    copied = {rest.split()[0] for keyword, rest in instructions() if keyword == "COPY"}
    assert set(package_dirs.values()) | {"pyproject.toml"} <= copied


def test_numba_caches_on_the_extenders_writable_mount():
    (deployment,) = objects("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (extender,) = pod["containers"]
    assert extender["securityContext"]["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [
        PurePosixPath(m["mountPath"])
        for m in extender["volumeMounts"]
        if m["name"] in empty_dirs and not m.get("readOnly")
    ]
    cache = PurePosixPath(image_env()[NUMBA_CACHE_ENV])
    assert any(cache.is_relative_to(mount) for mount in writable)


READ_ONLY_PROBE = """
import os, tempfile
cache = os.environ["NUMBA_CACHE_DIR"]
real = tempfile.TemporaryFile
def read_only_except_cache(*args, dir=None, **kwargs):
    if dir is None or not str(dir).startswith(cache):
        raise PermissionError(30, "Read-only file system", dir)
    return real(*args, dir=dir, **kwargs)
tempfile.TemporaryFile = read_only_except_cache
import phalanx.scheduler.kernels, phalanx.policies.scoring.fgd_kernels
print("imported")
"""


def test_kernels_import_when_only_the_numba_cache_dir_is_writable(tmp_path: Path):
    """The reason for the mount: numba checks that its cache is writable when a kernel module
    is imported. With everything else read-only (as in the chart), the import works once
    ``NUMBA_CACHE_DIR`` is writable."""
    env = {**os.environ, NUMBA_CACHE_ENV: str(tmp_path / "numba-cache")}
    result = subprocess.run(
        [sys.executable, "-c", READ_ONLY_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "imported"


def test_without_a_writable_cache_the_kernels_cannot_load(tmp_path: Path):
    """What the chart would hit without the mount (the failure the mount prevents)."""
    probe = READ_ONLY_PROBE.replace("startswith(cache)", "startswith('/nowhere/')")
    env = {**os.environ, NUMBA_CACHE_ENV: str(tmp_path / "numba-cache")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "no locator available" in result.stderr
