"""A small pool of threads that makes API calls off the request path, the latest call per key.

The planner decides under its lock and must never wait for the apiserver there, so what it asks
of the cluster besides binds (nominations, evictions, PodGroup status, Events) is handed to
workers. Calls for the same key coalesce: while one waits in the queue a newer one replaces it
(a pod nominated twice is written once, with the second node), and one key is never posted by
two workers at once, so an older write cannot land after a newer one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]
"""Called in a worker thread with the call's kind and argument."""


class ApiWorkers:
    """``submit(kind, key, arg)``: the latest ``arg`` per ``(kind, key)`` is handled;
    ``put(kind, arg)``: every call is handled. A handler's exception is logged, the worker
    goes on."""

    def __init__(self, name: str, workers: int, handle: Handler) -> None:
        self._handle = handle
        self._queue: queue.Queue[tuple[str, Hashable, Any] | None] = queue.Queue()
        self._latest: dict[tuple[str, Hashable], Any] = {}
        """Coalesced calls not handled yet (queued, or waiting for their key's worker)."""
        self._busy: set[tuple[str, Hashable]] = set()
        """Keys a worker is handling now."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, kind: str, key: Hashable, arg: Any) -> None:
        """Handle ``arg`` unless a newer call for the same key replaces it first."""
        slot = (kind, key)
        with self._lock:
            queued = slot in self._latest
            self._latest[slot] = arg
            if queued or slot in self._busy:
                return  # the queued marker, or the busy worker when it finishes, takes it
            self._pending += 1
        self._queue.put((kind, key, _COALESCED))

    def put(self, kind: str, arg: Any) -> None:
        """Handle ``arg`` (never replaced)."""
        with self._lock:
            self._pending += 1
        self._queue.put((kind, None, arg))

    def wait_idle(self, timeout_s: float) -> bool:
        """Until every call made so far is handled (tests, orderly shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, key, arg = item
            slot = (kind, key)
            if arg is _COALESCED:
                with self._lock:
                    arg = self._latest.pop(slot)
                    self._busy.add(slot)
            try:
                self._handle(kind, arg)
            except Exception:  # a worker must outlive any one failed call
                log.exception("%s failed", kind)
            finally:
                self._done(slot, coalesced=item[2] is _COALESCED)

    def _done(self, slot: tuple[str, Hashable], *, coalesced: bool) -> None:
        with self._lock:
            again = False
            if coalesced:
                self._busy.discard(slot)
                again = slot in self._latest  # submitted while this worker posted
            if not again:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()
        if again:
            self._queue.put((slot[0], slot[1], _COALESCED))


class _Coalesced:
    """The queue's marker of a coalesced call (its argument is in ``_latest``)."""


_COALESCED = _Coalesced()
