"""Runtime estimates for policies that need to know how long a gang will run (SJF, backfill).

Where an estimate comes from, first match wins:

1. the gang's own ``runtime_estimate_s`` (the trace's duration or the user's time limit, as
   Slurm's backfill uses ``--time``);
2. the median runtime of the last :data:`MEDIAN_WINDOW` gangs of the same queue and
   ``job_class`` (the application, a recurring job's name) that finished (reported through
   :meth:`RuntimeEstimator.record_completion`): a job's own history, where it has a class;
3. the same over the whole queue;
4. :data:`DEFAULT_RUNTIME_ESTIMATE_S`.

A running gang that has outlived its estimate is not expected to end "now". It used to be, and
on Philly (median 1,213 s, mean 13,108 s) most of the cluster was soon held by gangs past their
queue's median, so backfill planned every head as if it fit at once, its reservation held
nothing back and backfill gave FIFO's results to the second. Now its remaining time comes
from the same history, conditioned on what it has already run: the median of the queue's
recorded runtimes longer than its elapsed time, less that time (the runtime distribution's
median residual life), when at least :data:`MIN_TAIL_SAMPLES` such runtimes are known; past
the longest it has seen, as long again as it has run (heavy tails: a job that has run long is
likely to run long). Either way at least :data:`MIN_REMAINING_S`, so a reservation never
collapses onto the present.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque

import numpy as np
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import RunningGang

DEFAULT_RUNTIME_ESTIMATE_S = 3600.0
"""One hour, when neither the gang nor its queue's history says anything."""
MEDIAN_WINDOW = 101
"""Completed runtimes remembered per queue (odd, so the median is one of them)."""
MIN_TAIL_SAMPLES = 3
"""Runtimes longer than a gang's elapsed time needed before their median is trusted."""
MIN_REMAINING_S = 60.0
"""The least time a running gang is expected to go on for (one scheduling minute)."""


def own_estimate_s(gang: Gang) -> float | None:
    """The gang's own runtime estimate, when it gives a usable one (first in the order of the
    module's docstring)."""
    own = gang.runtime_estimate_s
    if own is not None and own > 0 and math.isfinite(own):
        return float(own)
    return None


class _History:
    """The last ``window`` runtimes of one queue (or one class in it), also kept sorted."""

    def __init__(self, window: int) -> None:
        self.recent: deque[float] = deque(maxlen=window)
        self.ordered: list[float] = []
        self.median = 0.0
        self._array: np.ndarray | None = None
        """``ordered`` as an array, made when asked for and dropped on every ``add``."""

    def add(self, runtime_s: float) -> None:
        if len(self.recent) == self.recent.maxlen:
            del self.ordered[bisect.bisect_left(self.ordered, self.recent[0])]
        self.recent.append(runtime_s)
        bisect.insort(self.ordered, runtime_s)
        self.median = statistics.median(self.ordered)
        self._array = None

    def as_array(self) -> np.ndarray:
        """The sorted runtimes as an array (kept until the next ``add``)."""
        if self._array is None:
            self._array = np.array(self.ordered, dtype=np.float64)
        return self._array

    def median_longer_than(self, elapsed_s: float, min_count: int) -> tuple[float | None, int]:
        """The median of the runtimes longer than ``elapsed_s`` when there are at least
        ``min_count`` of them, else None; and how many runtimes are not longer (the answer
        holds for every elapsed time with that count). Read off the sorted list by index, as
        :func:`statistics.median` would compute it, without copying and sorting the tail:
        backfill asks this for every overrunning gang on every reservation it plans."""
        ordered = self.ordered
        first = bisect.bisect_right(ordered, elapsed_s)
        n = len(ordered) - first
        if n < min_count or n == 0:
            return None, first
        middle = first + n // 2
        if n % 2 == 1:
            return ordered[middle], first
        return (ordered[middle - 1] + ordered[middle]) / 2, first

    def span_of(self, first: int) -> tuple[float, float]:
        """The elapsed times ``e`` with ``first`` runtimes not longer than ``e``:
        ``lo <= e < hi``."""
        ordered = self.ordered
        lo = ordered[first - 1] if first > 0 else -math.inf
        hi = ordered[first] if first < len(ordered) else math.inf
        return lo, hi


class RuntimeEstimator:
    def __init__(
        self, default_s: float = DEFAULT_RUNTIME_ESTIMATE_S, window: int = MEDIAN_WINDOW
    ) -> None:
        if default_s <= 0 or not math.isfinite(default_s):
            raise ValueError(f"default runtime estimate must be positive, got {default_s}")
        if window < 1:
            raise ValueError(f"median window must be at least 1, got {window}")
        self.default_s = default_s
        self.window = window
        self._history: dict[tuple[str, str], _History] = {}
        """(queue, job class) and (queue, "") -> its history."""
        self._lookup: dict[tuple[str, str], list[_History]] = {}
        """(queue, job class) -> :meth:`_histories` of a gang of that queue and class: asked
        for every running gang on every backfill plan, and it changes only when a history is
        created."""
        self.version = 0
        """Counts recorded completions: estimates change only when it does (or with time)."""
        self._queue_versions: dict[str, int] = {}

    def queue_version(self, queue: str) -> int:
        """Counts the completions recorded for ``queue``: the estimates of its gangs change
        only when it does (or with time), whatever other queues learn."""
        return self._queue_versions.get(queue, 0)

    def _histories(self, gang: Gang) -> list[_History]:
        """The gang's class history (if it has a class and it has one), then its queue's."""
        return self._histories_of(gang.queue, gang.job_class)

    def _histories_of(self, queue: str, job_class: str) -> list[_History]:
        known = self._lookup.get((queue, job_class))
        if known is not None:
            return known
        keys = [(queue, job_class), (queue, "")] if job_class else [(queue, "")]
        found = [self._history[k] for k in keys if k in self._history]
        self._lookup[(queue, job_class)] = found
        return found

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        if runtime_s < 0 or not math.isfinite(runtime_s):
            raise ValueError(f"gang {gang.name!r}: runtime {runtime_s} is not a duration")
        self.version += 1
        self._queue_versions[gang.queue] = self.queue_version(gang.queue) + 1
        keys = {(gang.queue, gang.job_class), (gang.queue, "")}
        for key in keys:
            history = self._history.get(key)
            if history is None:
                history = self._history[key] = _History(self.window)
                self._lookup.clear()
            history.add(runtime_s)

    def estimate_s(self, gang: Gang) -> float:
        """Expected total runtime of ``gang``."""
        own = own_estimate_s(gang)
        if own is not None:
            return own
        return self.history_estimate_s(gang.queue, gang.job_class)

    def history_estimate_s(self, queue: str, job_class: str) -> float:
        """The estimate of a gang of ``queue`` and ``job_class`` that gives none itself."""
        histories = self._histories_of(queue, job_class)
        return histories[0].median if histories else self.default_s

    def expected_end_s(self, running: RunningGang, now_s: float) -> float:
        """When ``running`` is expected to free its resources: its estimated end while that is
        ahead, else ``now_s`` plus :meth:`remaining_after_s` (never ``now_s`` itself)."""
        end = running.estimated_end_s
        if not math.isfinite(end):
            end = running.start_s + self.estimate_s(running.gang)
        if end > now_s:
            return end
        return now_s + self.remaining_after_s(running.gang, now_s - running.start_s)

    def remaining_after_s(self, gang: Gang, elapsed_s: float) -> float:
        """Expected further runtime of a gang like ``gang`` that has run ``elapsed_s`` past
        its estimate: the median of the longer recorded runtimes (of its class, else of its
        queue) less ``elapsed_s``, or ``elapsed_s`` again beyond the recorded ones (see the
        module's docstring)."""
        median, _, _ = self.remaining_rule(gang, elapsed_s)
        remaining = elapsed_s if median is None else median - elapsed_s
        return max(remaining, MIN_REMAINING_S)

    def remaining_rule(self, gang: Gang, elapsed_s: float) -> tuple[float | None, float, float]:
        """What :meth:`remaining_after_s` reads for ``elapsed_s``: the median it subtracts
        ``elapsed_s`` from (None: it runs as long again), and the elapsed times ``lo <= e <
        hi`` for which that holds until the gang's queue learns (backfill keeps it per running
        gang instead of asking again on every plan)."""
        lo, hi = -math.inf, math.inf
        for history in self._histories(gang):
            median, first = history.median_longer_than(elapsed_s, MIN_TAIL_SAMPLES)
            h_lo, h_hi = history.span_of(first)
            lo, hi = max(lo, h_lo), min(hi, h_hi)
            if median is not None:
                return median, lo, hi
        return None, lo, hi

    def remaining_rules(
        self, queue: str, job_class: str, elapsed_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`remaining_rule` for many gangs of one queue and class at once, as arrays
        (median, whether there is one, lo, hi; median 0.0 where there is none): backfill
        renews some 40 overrunning gangs' rules per plan, and one Python call each was about a
        third of its expected ends' time under cProfile. The same comparisons and the same
        float operations, so the same rules to the last bit (``tests/test_estimates_rules.py``
        holds it to the scalar one)."""
        n = len(elapsed_s)
        median = np.zeros(n)
        found = np.zeros(n, dtype=bool)
        lo, hi = np.full(n, -math.inf), np.full(n, math.inf)
        todo = np.ones(n, dtype=bool)
        for history in self._histories_of(queue, job_class):
            ordered = history.as_array()
            size = len(ordered)
            first = np.searchsorted(ordered, elapsed_s, side="right")
            h_lo = np.where(first > 0, ordered[np.maximum(first - 1, 0)], -math.inf)
            h_hi = np.where(first < size, ordered[np.minimum(first, size - 1)], math.inf)
            lo = np.where(todo, np.maximum(lo, h_lo), lo)
            hi = np.where(todo, np.minimum(hi, h_hi), hi)
            count = size - first
            hit = todo & (count >= MIN_TAIL_SAMPLES) & (count > 0)
            if hit.any():
                middle = first[hit] + count[hit] // 2
                upper = ordered[middle]
                lower = ordered[middle - 1]
                median[hit] = np.where(count[hit] % 2 == 1, upper, (lower + upper) / 2)
                found |= hit
                todo &= ~hit
            if not todo.any():
                break
        return median, found, lo, hi
