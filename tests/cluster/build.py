"""Build the real control plane (etcd, kube-apiserver, kube-scheduler) from Go modules, once.

The Go module in ``controlplane/`` pins ``k8s.io/kubernetes`` at one release and replaces every
``k8s.io/*`` staging module with its matching ``v0.X.Y`` tag, so ``go build`` through the module
proxy produces the same binaries a release ships. etcd is built from ``go.etcd.io/etcd/server/v3``
at the version that release pins (a three-line ``main`` around ``etcdmain``).

Binaries are cached outside the repository, keyed by the Kubernetes version and a hash of
``go.mod``/``go.sum``/the Go version: a second run (or a second CI run on the same machine)
reuses them, and a version change builds anew beside the old one. ``python -m
tests.cluster.build`` builds ahead of a test run and prints the build's time and peak memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent / "controlplane"
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")
GO_PACKAGES = (
    "./etcd",
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-scheduler",
)
CACHE_ENV = "PHALANX_CONTROLPLANE_CACHE"
"""Overrides the cache folder (default: ``$XDG_CACHE_HOME/phalanx/controlplane``)."""
BUILD_TIMEOUT_S = 3600
BUILD_INFO = "build-info.json"


class BuildError(RuntimeError):
    """The components could not be built; the message has the go command's last lines."""


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """Where the built binaries are, and what the build that made them cost."""

    directory: Path
    kubernetes_version: str
    etcd_version: str
    build_s: float
    peak_rss_mib: float
    reused: bool

    def path(self, name: str) -> Path:
        return self.directory / name


def kubernetes_version() -> str:
    """The ``k8s.io/kubernetes`` version that ``controlplane/go.mod`` requires."""
    return _required_version("k8s.io/kubernetes")


def etcd_version() -> str:
    """The etcd server version that Kubernetes release pins (``go.mod`` after tidy)."""
    return _required_version("go.etcd.io/etcd/server/v3")


def _required_version(module: str) -> str:
    text = (MODULE_DIR / "go.mod").read_text()
    found = re.search(rf"^\s*{re.escape(module)} (v\S+)", text, re.M)
    if found is None:
        raise BuildError(f"{MODULE_DIR / 'go.mod'}: {module} is not required")
    return found.group(1)


def go_command() -> str | None:
    """The ``go`` binary, or None when this machine has no Go toolchain."""
    return shutil.which("go")


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "phalanx" / "controlplane"


def cache_key(go: str) -> str:
    """Kubernetes version plus a hash of what decides the binaries' bytes."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "etcd/main.go"):
        digest.update((MODULE_DIR / name).read_bytes())
    go_version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest.update(go_version.encode())
    return f"{kubernetes_version()}-{digest.hexdigest()[:12]}"


def ensure_built(*, log: bool = True) -> ControlPlaneBinaries:
    """The cached binaries, building them first when this version has none (under a file lock,
    so concurrent test sessions build once)."""
    go = go_command()
    if go is None:
        raise BuildError("no Go toolchain on PATH: the control plane is built from Go modules")
    target = cache_root() / cache_key(go)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target):
            return _binaries(target, reused=True)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        if log:
            print(
                f"building kube-apiserver, kube-scheduler {kubernetes_version()} and etcd "
                f"{etcd_version()} from Go modules (first run only; see tests/cluster/README.md)",
                file=sys.stderr,
                flush=True,
            )
        build_s, peak_rss_mib = _go_build(go, staging)
        info = {
            "kubernetes_version": kubernetes_version(),
            "etcd_version": etcd_version(),
            "build_s": round(build_s, 1),
            "peak_rss_mib": round(peak_rss_mib, 1),
        }
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return _binaries(target, reused=False)


def _go_build(go: str, out_dir: Path) -> tuple[float, float]:
    """Runs ``go build``; returns (wall seconds, peak RSS of its largest process in MiB: the
    compiler or linker, whichever peaked highest)."""
    env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false")
    command = [go, "build", "-ldflags", _version_ldflags(), "-o", str(out_dir) + os.sep]
    command += GO_PACKAGES
    start = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=MODULE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"go build did not finish in {BUILD_TIMEOUT_S} s") from None
    build_s = time.monotonic() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise BuildError(f"go build failed in {MODULE_DIR} (exit {done.returncode}):\n{tail}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return build_s, peak_kib / 1024.0


def _version_ldflags() -> str:
    """Stamps the release into the binaries as Kubernetes' own build does (hack/lib/version.sh),
    so ``--version`` and the apiserver's ``/version`` say v1.37.2, not v0.0.0-master."""
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _complete(directory: Path) -> bool:
    return (directory / BUILD_INFO).is_file() and all(
        (directory / name).is_file() for name in BINARIES
    )


def _binaries(directory: Path, *, reused: bool) -> ControlPlaneBinaries:
    info = json.loads((directory / BUILD_INFO).read_text())
    return ControlPlaneBinaries(
        directory=directory,
        kubernetes_version=info["kubernetes_version"],
        etcd_version=info["etcd_version"],
        build_s=float(info["build_s"]),
        peak_rss_mib=float(info["peak_rss_mib"]),
        reused=reused,
    )


def main() -> None:
    try:
        built = ensure_built()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    state = "reused" if built.reused else "built"
    print(
        f"{state} Kubernetes {built.kubernetes_version} (kube-apiserver, kube-scheduler) and "
        f"etcd {built.etcd_version} in {built.directory}; first build {built.build_s:.0f} s, "
        f"peak memory {built.peak_rss_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
