"""The operators' read-only endpoints beside ``/debug/state``: ``/debug/queue`` (queues, tenants,
gangs by phase) and ``/debug/explain?gang=NS/NAME`` or ``?pod=NS/NAME`` (one gang). They back
``phalanx status`` and ``phalanx explain``; each is computed under the planner's lock and
changes nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from phalanx.extender.explain_view import NotFound, explain
from phalanx.extender.planner import Planner
from phalanx.extender.queue_views import queue_report

PATHS = ("/debug/queue", "/debug/explain")


def debug_view(path: str, query: bytes, planner: Planner | None) -> tuple[int, Any] | None:
    """``(status, document)`` for one of :data:`PATHS`, None for any other path."""
    if path not in PATHS:
        return None
    if planner is None:
        return 503, {"Error": "Phalanx is not ready: no cluster view yet"}
    if path == "/debug/queue":
        return 200, queue_report(planner)
    args = parse_qs(query.decode("latin-1"))
    gang, pod = args.get("gang", [""])[0], args.get("pod", [""])[0]
    if bool(gang) == bool(pod):
        return 400, {"Error": "name one gang (?gang=NAMESPACE/NAME) or one pod (?pod=...)"}
    try:
        return 200, explain(planner, gang=gang, pod=pod)
    except NotFound as exc:
        return 404, {"Error": str(exc)}
