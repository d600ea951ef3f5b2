"""How the extender waits and retries when the apiserver is slow, throttles or fails.

Every call to the apiserver is bounded by a timeout (a hung request must end so the watch or
the bind behind it can go on), and a failed call is retried after an exponential backoff with
jitter, never sooner than the server's ``Retry-After`` asks: an apiserver answering 429 is
shedding load (API priority and fairness), and retrying at once from every watch and bind
thread would add to it. The retry policy lives here, in one place; the kubernetes client's own
transport retries are switched off (:func:`transport_retries`) so the two do not multiply.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

HTTP_TOO_MANY_REQUESTS = 429
TRANSIENT_STATUSES = frozenset({0, 408, HTTP_TOO_MANY_REQUESTS, 500, 502, 503, 504})
"""Answers after which the same request may succeed: throttling, timeouts, server errors,
and status 0 (the client's own failure, e.g. a TLS error on a dropped connection)."""
MAX_RETRY_AFTER_S = 30.0
"""A longer ``Retry-After`` is cut to this: a watch must not sleep through minutes of events."""
CONNECT_TIMEOUT_S = 5.0
"""Opening a connection to the apiserver; loopback or in-cluster, so seconds are plenty."""


@dataclass
class Backoff:
    """Exponential backoff with equal jitter: delay ``n`` is drawn from ``[b/2, b]`` with
    ``b = min(cap, initial * factor**n)``; :meth:`reset` after a success. Jitter keeps the
    watches and binds of one extender (and of its replicas) from retrying in lockstep."""

    initial_s: float = 0.2
    cap_s: float = 10.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The pause before the next try; at least ``retry_after_s`` when the server gave one."""
        base = min(self.cap_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        delay = base / 2 + self.rng.uniform(0, base / 2)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_after_s(exc: BaseException) -> float | None:
    """The ``Retry-After`` of an API error in seconds (capped), None when it has none. Only the
    delta-seconds form is read: the apiserver never sends an HTTP date."""
    headers: Any = getattr(exc, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative: not a usable hint
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def is_transient(exc: BaseException) -> bool:
    """May the same request succeed if tried again? Throttling, server errors, timeouts and
    broken connections may; 4xx answers about the request itself (403, 404, 409, 422) may not."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES or exc.status is None
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def transport_retries() -> urllib3.Retry:
    """The urllib3 retry setting for the extender's API client: reconnect when a pooled
    connection turns out to be closed, nothing else. By default urllib3 would also re-send a
    GET after a 429 with ``Retry-After`` on its own (up to three times, sleeping in the
    caller's thread); the reflector and binder do that themselves with backoff, and counting
    it in one place keeps the waits bounded and visible."""
    return urllib3.Retry(
        total=2,
        connect=2,
        read=0,
        status=0,
        other=0,
        redirect=0,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def with_transport_retries(api_client: client.ApiClient) -> client.ApiClient:
    """A client on the same configuration (server, credentials, CA) whose connection pool
    uses :func:`transport_retries`; the pool is made when the client is, so the setting cannot
    be changed on ``api_client`` itself."""
    configuration = copy.copy(api_client.configuration)
    configuration.retries = transport_retries()
    return client.ApiClient(configuration)
