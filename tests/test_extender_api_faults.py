"""The extender's side of API faults, without a cluster: the backoff honours Retry-After, the
reflector resumes a dropped watch from its resourceVersion and lists again only on 410, and a
bind whose answer was lost is read back instead of being reported failed or posted twice.
(The same faults against the real control plane: tests/cluster/test_cluster_api_faults.py.)"""

from __future__ import annotations

import random
import threading
from typing import Any

import orjson
import pytest
import urllib3
from kubernetes.client.rest import ApiException
from phalanx.extender.api_retry import Backoff, is_transient, retry_after_s
from phalanx.extender.binding import BindRequest
from phalanx.extender.kube_binder import KubeBinder
from phalanx.extender.reflector import Handlers, Reflector


def api_error(status: int, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="injected")
    exc.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return exc


def test_backoff_grows_is_capped_and_honours_retry_after():
    backoff = Backoff(initial_s=0.2, cap_s=1.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(d <= 1.0 for d in delays) and delays[-1] >= 0.5
    assert backoff.next_delay(retry_after_s(api_error(429, "3"))) >= 3.0
    backoff.reset()
    assert backoff.next_delay() <= 0.2


@pytest.mark.parametrize("value, expected", [("2", 2.0), ("0", 0.0), ("x", None), ("9999", 30.0)])
def test_retry_after_is_read_in_seconds_and_capped(value, expected):
    assert retry_after_s(api_error(429, value)) == expected
    assert retry_after_s(api_error(429)) is None


def test_transient_errors_are_told_from_final_ones():
    assert all(is_transient(api_error(s)) for s in (429, 500, 503, 504))
    assert not any(is_transient(api_error(s)) for s in (400, 403, 404, 409, 422))
    assert is_transient(urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"))
    assert is_transient(ConnectionResetError())


# --- reflector ------------------------------------------------------------------------------
class Resp:
    """A watch or list response: ``data`` for a list, streamed lines for a watch."""

    def __init__(self, data: bytes = b"", lines: list[bytes] | None = None) -> None:
        self.data = data
        self.lines = lines or []

    def stream(self, amt: Any = None, decode_content: bool = False):
        yield from self.lines

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def event(kind: str, name: str, rv: str) -> bytes:
    obj = {"metadata": {"name": name, "resourceVersion": rv}}
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


class ScriptedApi:
    """Answers list and watch calls from a script; records what was asked."""

    def __init__(self, script: list[Any], stop: threading.Event) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.stop = stop

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if not self.script:
            self.stop.set()
            return Resp(lines=[])
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def run_reflector(script: list[Any]) -> tuple[ScriptedApi, list[str], Reflector]:
    stop = threading.Event()
    api = ScriptedApi(script, stop)
    seen: list[str] = []
    handlers = Handlers(
        replace=lambda items: seen.append(f"list:{len(items)}"),
        upsert=lambda obj: seen.append(f"upsert:{obj['metadata']['name']}"),
        delete=lambda obj: seen.append(f"delete:{obj['metadata']['name']}"),
    )
    reflector = Reflector(
        "pods", api, handlers, stop, 5, backoff=Backoff(initial_s=0.001, cap_s=0.002)
    )
    reflector.run()
    return api, seen, reflector


def listed(rv: str, names: list[str]) -> Resp:
    items = [{"metadata": {"name": n}} for n in names]
    return Resp(data=orjson.dumps({"items": items, "metadata": {"resourceVersion": rv}}))


def test_dropped_watch_resumes_from_its_resource_version_without_a_list():
    script = [
        listed("10", ["a"]),
        Resp(lines=[event("ADDED", "b", "11")]),  # then the connection drops
        urllib3.exceptions.ProtocolError("Connection broken"),
        Resp(lines=[event("ADDED", "c", "12")]),
    ]
    api, seen, reflector = run_reflector(script)
    watches = [c for c in api.calls if c.get("watch")]
    assert [c["resource_version"] for c in watches[:3]] == ["10", "11", "11"]
    assert seen == ["list:1", "upsert:b", "upsert:c"]
    assert reflector.stats.lists == 1 and reflector.stats.errors >= 1
    assert all(c["_request_timeout"][1] > 5 for c in watches), "a hung watch must time out"


@pytest.mark.parametrize("as_event", [False, True])
def test_gone_lists_again(as_event):
    gone: Any = (
        Resp(
            lines=[orjson.dumps({"type": "ERROR", "object": {"code": 410, "message": "o"}}) + b"\n"]
        )
        if as_event
        else api_error(410)
    )
    script = [listed("10", ["a"]), gone, listed("20", ["a", "b"]), Resp(lines=[])]
    api, seen, reflector = run_reflector(script)
    assert seen[:2] == ["list:1", "list:2"]
    assert reflector.stats.gone == 1
    watches = [c for c in api.calls if c.get("watch")]
    assert [c["resource_version"] for c in watches[:2]] == ["10", "20"]


def test_throttled_watch_waits_retry_after_and_keeps_its_place():
    script = [listed("10", []), api_error(429, "0.05"), Resp(lines=[event("ADDED", "x", "11")])]
    _api, seen, reflector = run_reflector(script)
    assert reflector.stats.backoff_s >= 0.05
    assert reflector.stats.lists == 1
    assert seen == ["list:0", "upsert:x"]


# --- binder ---------------------------------------------------------------------------------
class ScriptedCore:
    """create_namespaced_pod_binding / read_namespaced_pod from a script of outcomes."""

    def __init__(self, posts: list[Any], node_after: list[str]) -> None:
        self.posts, self.node_after = posts, node_after
        self.post_count = 0
        self.reads = 0

    def create_namespaced_pod_binding(self, *args: Any, **kwargs: Any) -> Any:
        self.post_count += 1
        outcome = self.posts.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def read_namespaced_pod(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        node = self.node_after.pop(0) if self.node_after else ""
        doc = {"metadata": {"uid": "u1"}, "spec": {"nodeName": node} if node else {}}
        return Resp(data=orjson.dumps(doc))


def binder_with(core: ScriptedCore, timeout_s: float = 5.0) -> KubeBinder:
    binder = KubeBinder.__new__(KubeBinder)
    KubeBinder.__init__(binder, _NoClient(), timeout_s, sleep=lambda s: None)
    binder.core = core  # type: ignore[assignment]
    return binder


class _NoClient:
    """Stands in for an ApiClient; CoreV1Api only keeps it."""


REQUEST = BindRequest("ml", "w-0", "u1", "gpu-1", {})


def test_bind_answered_504_after_it_succeeded_is_confirmed_not_reposted():
    core = ScriptedCore([api_error(504)], node_after=["gpu-1"])
    binder = binder_with(core)
    outcome = binder.bind(REQUEST)
    assert outcome.ok and outcome.bound_node == "gpu-1"
    assert core.post_count == 1, "a bind that happened is not posted again"
    assert binder.stats.confirmed_after_error == 1


def test_bind_timeout_before_it_reached_the_server_is_retried():
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/binding", "read timed out")
    core = ScriptedCore([timeout, api_error(429, "0"), Resp()], node_after=["", ""])
    binder = binder_with(core)
    assert binder.bind(REQUEST).ok
    assert core.post_count == 3 and binder.stats.retries == 2


def test_bind_gives_up_within_its_timeout_and_says_why():
    core = ScriptedCore([api_error(503)] * 100, node_after=[])
    binder = binder_with(core, timeout_s=0.0)
    outcome = binder.bind(REQUEST)
    assert not outcome.ok and "503" in outcome.error and "gave up" in outcome.error


def test_bind_refused_for_good_is_not_retried():
    core = ScriptedCore([api_error(403)], node_after=[])
    outcome = binder_with(core).bind(REQUEST)
    assert not outcome.ok and core.post_count == 1 and core.reads == 0
