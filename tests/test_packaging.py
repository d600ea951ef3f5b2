"""The wheel installs one import name, ``phalanx``, and so lives beside PyPI's ``scheduler``.

Before the move to one namespace the wheel put ``scheduler``, ``bench``, ``topology`` ... at the
top level of site-packages, where they shadowed (or were shadowed by) unrelated distributions.
These tests build the real wheel from a copy of the sources (a stale ``build/`` folder in the
checkout cannot leak into it) and check what it installs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "phalanx", "topology", "scheduler", "policies")
SOURCES += ("simulator", "extender", "bench")
BUILD_TIMEOUT_S = 60
VENV_CHECK_BUDGET_S = 30.0
"""The venv check stays within about 30 s: a venv without pip, PyPI's ``scheduler`` (with its
one small dependency) and our wheel with ``--no-deps`` (its dependencies come from the system
site-packages the venv sees)."""
PYPI_HOST = "pypi.org"
HTTPS_PORT = 443
PROBE_TIMEOUT_S = 3.0
PYPI_SCHEDULER = "scheduler"
"""An unrelated PyPI distribution whose import name Phalanx's scheduler package once took."""


def _setuptools_builds_wheels() -> bool:
    try:
        import setuptools.command.bdist_wheel  # noqa: F401  (in setuptools >= 70.1)
    except ImportError:
        try:
            import wheel.bdist_wheel  # noqa: F401
        except ImportError:
            return False
    return True


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _setuptools_builds_wheels():
        pytest.skip("no bdist_wheel: install the test extras (setuptools>=70.1)")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = root / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "--disable-pip-version-check", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (built,) = out.glob("phalanx-*.whl")
    return built


def test_the_wheel_installs_only_the_phalanx_import_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        top_level = archive.read(f"{info}/top_level.txt").decode().split()
        record = archive.read(f"{info}/RECORD").decode().splitlines()
    assert top_level == ["phalanx"]
    installed = {line.split(",")[0].split("/")[0] for line in record if line}
    assert installed == {"phalanx", info}
    for package in ("topology", "scheduler", "policies", "simulator", "extender", "bench"):
        assert f"phalanx/{package}/__init__.py" in names
    assert "phalanx/simulator/data/philly_sample.csv" in names, "the main job's bundled sample"
    assert "phalanx/cli.py" in names


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection((PYPI_HOST, HTTPS_PORT), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def test_phalanx_installs_beside_pypis_scheduler(wheel: Path, tmp_path: Path):
    if not _pypi_reachable():
        pytest.skip(f"PyPI ({PYPI_HOST}) cannot be reached; needed to install '{PYPI_SCHEDULER}'")
    deadline = time.monotonic() + VENV_CHECK_BUDGET_S

    def left_s() -> float:
        """Each step's timeout: what is left of the budget, so the test ends by the deadline."""
        return max(deadline - time.monotonic(), 1.0)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    pip += ["--disable-pip-version-check", "--timeout", "10"]
    for extra in ([PYPI_SCHEDULER], ["--no-deps", str(wheel)]):  # theirs imports typeguard
        subprocess.run([*pip, *extra], check=True, capture_output=True, timeout=left_s())
    probe = (
        "import scheduler, phalanx.scheduler, phalanx.scheduler.engine\n"
        "print(scheduler.__file__); print(phalanx.scheduler.__file__)\n"
        "print(hasattr(scheduler, 'Scheduler'))\n"
    )
    result = subprocess.run(  # not from the checkout, whose folders would shadow both
        [str(python), "-c", probe],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=left_s(),
    )
    theirs, ours, has_scheduler_class = result.stdout.split()
    assert Path(theirs).is_relative_to(env_dir), "PyPI's scheduler, from the venv"
    assert Path(ours).is_relative_to(env_dir), "our wheel, not the checkout's editable install"
    assert has_scheduler_class == "True", "the PyPI distribution, not ours"
