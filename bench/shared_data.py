"""Where the public GPU-cluster traces live, and what to do when they are not there.

The full traces (Philly, openb, Gavel, Pollux, Sia) are too large to ship with the package, so
they sit in a ``shared/`` folder beside the repository, or wherever ``$PHALANX_SHARED_DIR``
points. A fresh clone has no such folder: tests and benchmarks that need the data skip with a
one-line reason (:func:`missing_reason`), and the report commands stop with one error line,
instead of failing on a path the newcomer never created.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR_ENV = "PHALANX_SHARED_DIR"
"""Environment variable naming the folder that holds ``traces/`` (overrides the default)."""
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DIR = REPO_ROOT.parent / "shared"
"""``shared/`` next to the repository checkout."""
TRACES_SUBDIR = "traces"


def shared_dir() -> Path:
    """The shared data folder: ``$PHALANX_SHARED_DIR`` when set, else ``../shared``.

    Read on every call (not at import) so a test can point it elsewhere with ``monkeypatch``.
    """
    configured = os.environ.get(SHARED_DIR_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_SHARED_DIR


def trace_path(*parts: str) -> Path:
    """A path under the shared ``traces/`` folder, e.g. ``trace_path("philly")``."""
    return shared_dir().joinpath(TRACES_SUBDIR, *parts)


def missing_reason(path: Path) -> str | None:
    """``None`` when ``path`` exists, else one line saying what is missing and how to fix it
    (the text of a ``pytest.skip`` or of a command's error)."""
    if path.exists():
        return None
    return (
        f"public trace data not found: {path} (set {SHARED_DIR_ENV} to the folder holding "
        f"{TRACES_SUBDIR}/; default: shared/ beside the repository)"
    )
