"""The soak's memory measurement: the server's RSS sampled over the run, and whether it stayed
flat (:func:`flatness`), for ``python -m phalanx.bench.extender_soak``."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

MIB = 1024 * 1024
SOAK_FLAT_FROM_S = 120.0
"""The soak's flatness is judged from minute 2: the first two minutes fill the server's
bounded caches (last lists, decision ring, served-GPU map, pymalloc arenas)."""
SOAK_WINDOW_S = 60.0
"""RSS is averaged over a minute at each end of the judged span, so one sample's noise does
not decide the verdict."""
RSS_GROWTH_BOUND_MIB = 16.0
"""Largest RSS growth from minute 2 to the end of the soak still called flat. At 1,000
pairs/s minutes 2-10 see about 480,000 pods; a leak of one small object (about 35 bytes) per
pod would pass 16 MiB, while run-to-run allocator noise on this server is a few MiB."""


def server_rss_mib(pid: int) -> float:
    """``VmRSS`` of a process in MiB (Linux ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sample_rss(pid: int, every_s: float, t0: float, stop: threading.Event, out: list) -> None:
    """``(seconds since t0, RSS MiB)`` every ``every_s`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            out.append((round(time.monotonic() - t0, 1), round(server_rss_mib(pid), 1)))
        except (OSError, RuntimeError):
            return
        stop.wait(every_s)


def flatness(curve: list[tuple[float, float]], duration_s: float, pods: int) -> dict[str, Any]:
    """RSS growth from minute 2 to the end (each end a minute's mean) against the bound."""
    if duration_s < SOAK_FLAT_FROM_S + 2 * SOAK_WINDOW_S:
        return {
            "judged": False,
            "why": f"needs a run of {SOAK_FLAT_FROM_S + 2 * SOAK_WINDOW_S:.0f} s",
        }
    head = [m for t, m in curve if SOAK_FLAT_FROM_S <= t < SOAK_FLAT_FROM_S + SOAK_WINDOW_S]
    tail = [m for t, m in curve if duration_s - SOAK_WINDOW_S <= t <= duration_s]
    if not head or not tail:
        return {"judged": False, "why": "too few RSS samples"}
    growth = statistics.fmean(tail) - statistics.fmean(head)
    return {
        "judged": True,
        "from_s": SOAK_FLAT_FROM_S,
        "rss_from_mib": round(statistics.fmean(head), 1),
        "rss_end_mib": round(statistics.fmean(tail), 1),
        "growth_mib": round(growth, 1),
        "bound_mib": RSS_GROWTH_BOUND_MIB,
        "growth_bytes_per_pod": round(growth * MIB / pods, 1) if pods else None,
        "flat": growth <= RSS_GROWTH_BOUND_MIB,
    }
