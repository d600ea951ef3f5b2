"""Keep the heap's freed memory for the next request instead of handing it back to the kernel.

A filter with 10,000 names brings a body of about 130 KB and a rejection sends back about
700 KB; glibc serves blocks that large with a fresh ``mmap`` (its threshold starts at 128 KiB)
and returns freed memory at the top of the heap to the kernel, so every such request touched
new pages, and each page fault costs microseconds in a virtual machine: copying a 700 KB reply
took about 1 ms where the copy itself takes 0.1 ms. Raising both thresholds once at start keeps
those blocks in the heap, reused from request to request; the process's RSS then stays at its
high-water mark instead of following each request (the soak test's RSS is judged from minute 2
on, after that mark is reached).
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameters (``malloc.h``)."""
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Blocks below this come from the heap: above the 16 MiB request body limit."""
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024
"""Free memory at the top of the heap kept before any is handed back."""


def keep_freed_memory() -> bool:
    """Set glibc's thresholds; False (and nothing changed) on another C library."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(
        M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES
    )
    if not done:
        log.warning("could not raise the heap's thresholds; large requests will fault pages in")
    return bool(done)
