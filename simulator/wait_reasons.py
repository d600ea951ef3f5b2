"""Why jobs waited, in the reason codes of :mod:`scheduler.reasons`, and for how long.

Each scheduling cycle gives every gang it does not start a code (:attr:`CycleOutcome.codes`:
``capacity``, ``fragmented``, ``quota``, ``waiting_behind`` ...), the words the extender puts
into pods' events and ``phalanx explain`` prints. The engine books, per job, the seconds it
spent queued under each code: a spell in the queue (from arrival, or from a preemption or an
expired reservation that put it back) is split where the code changes, and ends when the job
is started or reserved, is rejected or dropped, or the run ends. Time queued before any cycle
looked at the job (a scheduling interval's wait for the next tick) is booked as ``untried``,
the label the extender's metrics use. A reserved job is not queued, so its bind time is not a
wait here. Booking is one comparison per waiting gang per cycle; the dictionary of a job is
made only when it first waits a positive time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from phalanx.simulator.records import JobRun

UNTRIED = "untried"
"""Queued time no cycle has labelled yet (nothing was decided about the job)."""
SEPARATOR = ";"
"""Between ``reason=seconds`` pairs in the ``wait_s_by_reason`` column of ``jobs.csv``."""


def enter_queue(run: JobRun, now_s: float) -> None:
    """The job joined the queue (arrival, preemption, expired reservation): a new spell."""
    run.wait_code = ""
    run.wait_since_s = now_s


def label(run: JobRun, code: str, now_s: float) -> None:
    """A cycle left the job waiting with ``code``; a change of code closes the time so far
    under the old one (``untried`` before the first)."""
    if code != run.wait_code:
        _book(run, now_s)
        run.wait_code = code
        run.wait_since_s = now_s


def leave_queue(run: JobRun, now_s: float) -> None:
    """The spell ends (started, reserved, retired, or the run ended); ``wait_code`` keeps the
    spell's last code."""
    if not math.isnan(run.wait_since_s):
        _book(run, now_s)
        run.wait_since_s = math.nan


def _book(run: JobRun, now_s: float) -> None:
    waited_s = now_s - run.wait_since_s
    if waited_s > 0:
        if run.wait_s_by_code is None:
            run.wait_s_by_code = {}
        code = run.wait_code or UNTRIED
        run.wait_s_by_code[code] = run.wait_s_by_code.get(code, 0.0) + waited_s


# ---------------------------------------------------------------------------- reading
def queued_s(run: JobRun) -> float:
    """Seconds the job spent queued over its whole life (every spell)."""
    return sum(run.wait_s_by_code.values()) if run.wait_s_by_code else 0.0


def main_reason(run: JobRun) -> str:
    """The code the job waited under longest (the later one at a tie); empty if it never
    waited."""
    if not run.wait_s_by_code:
        return ""
    items = list(run.wait_s_by_code.items())
    return max(reversed(items), key=lambda item: item[1])[0]


def reasons_cell(run: JobRun) -> str:
    """``code=seconds`` pairs, longest first, for one CSV cell (``capacity=812.5;quota=30``)."""
    if not run.wait_s_by_code:
        return ""
    items = sorted(run.wait_s_by_code.items(), key=lambda item: (-item[1], item[0]))
    return SEPARATOR.join(f"{code}={seconds:.6g}" for code, seconds in items)


def parse_reasons_cell(cell: str) -> dict[str, float]:
    """The inverse of :func:`reasons_cell` (for readers of ``jobs.csv`` and tests)."""
    out: dict[str, float] = {}
    for pair in filter(None, cell.split(SEPARATOR)):
        code, _, seconds = pair.partition("=")
        out[code] = float(seconds)
    return out


def wait_reasons_by_queue(runs: Iterable[JobRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per queue, per code: the jobs that waited under it, their seconds in all, and the mean
    over those jobs; codes by total time, longest first."""
    totals: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if not run.wait_s_by_code:
            continue
        queue = totals.setdefault(run.gang.queue, {})
        for code, seconds in run.wait_s_by_code.items():
            cell = queue.setdefault(code, [0, 0.0])
            cell[0] += 1
            cell[1] += seconds
    return {
        queue: {
            code: {"jobs": int(jobs), "total_s": total_s, "mean_s": total_s / jobs}
            for code, (jobs, total_s) in sorted(codes.items(), key=lambda kv: (-kv[1][1], kv[0]))
        }
        for queue, codes in sorted(totals.items())
    }
