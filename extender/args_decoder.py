"""Decoding ``filter``/``prioritize`` bodies without turning the offered node list into
thousands of Python strings.

In ``NodeNames`` mode the candidate list is nearly all of a request (about 140 KB for 10,000
nodes). kube-scheduler marshals ``ExtenderArgs`` in field order (``Pod``, ``Nodes``,
``NodeNames``), so the list is the body's last member: the head is parsed with ``null``
standing in for the list, and the list is kept as a :class:`~extender.node_list.NodeNameList`
(its bytes, checked and split by compiled passes). A list byte-for-byte the same as a recent
one (consecutive pods are often offered the same nodes) is not even scanned again, and a head
byte-for-byte the same as a recent one (the prioritize after a pod's filter) is not parsed
again: the planner never changes a pod it was given in place.

The answer is always the one :func:`extender.wire.parse_extender_args` gives for the whole
body: the stand-in is used only where it is provably the same document (its key closes the
top-level object, no other spelling of ``NodeNames`` competes with it, the list is a compact
array of plain strings); every other body (``Nodes`` mode, another writer's key order or
layout, a bad request) takes the general path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from phalanx.extender import wire
from phalanx.extender.node_list import NodeNameList

NODE_NAMES_KEY = b'"NodeNames":'
"""The key as Go's encoder writes it (struct field name, no JSON tag)."""
NODE_NAMES_START = NODE_NAMES_KEY + b"["
"""The key and the list's first byte: searched from the front, it is found right after the
pod (a few hundred bytes in) instead of after a scan back over the whole list."""
STAND_IN = NODE_NAMES_KEY + b"null}"
NODE_NAMES_FIELD = "nodenames"
CLOSING_BRACE = b"}"
RECENT_LISTS = 4
"""Long lists remembered by their bytes."""
RECENT_PODS = 8
"""Heads remembered: kube-scheduler's prioritize repeats the filter's pod byte for byte."""
MIN_REMEMBERED_BYTES = 4096
"""Shorter lists (prioritize's filter survivors) are decoded as Python strings, faster than
compared or scanned, and are not remembered (they would push the long lists out)."""


class ExtenderArgsDecoder:
    """``bytes -> ExtenderArgs`` for ``filter`` and ``prioritize``; raises
    :class:`~extender.wire.WireError` exactly as the general path does."""

    def __init__(self) -> None:
        self._recent: list[NodeNameList] = []
        self._pods: dict[bytes, dict[str, Any]] = {}
        """Pods decoded lately, by their bodies' heads (the planner never changes a pod it was
        given in place, so one decoded pod serves every request that carries it)."""

    def __call__(self, body: bytes) -> wire.ExtenderArgs:
        args = self._with_node_list(body)
        return args if args is not None else wire.parse_extender_args(wire.decode(body))

    def _with_node_list(self, body: bytes) -> wire.ExtenderArgs | None:
        """None unless the body is ``{...,"NodeNames":[...]}`` with a list of strings as its
        last top-level member (a long one compact, of plain strings).

        The stand-in's key is a top-level member closing the object when the head + stand-in
        parses and the head does not end in a backslash (which would escape the key's quote
        and make it part of an earlier key). The list is then the value of ``NodeNames``
        unless another spelling of the key (``nodeNames``...) is folded onto it.
        """
        at = body.find(NODE_NAMES_START)
        if at < 0 or not body.endswith(CLOSING_BRACE):
            return None
        head = body[:at]
        if head.endswith(b"\\"):
            return None
        names = self._node_list(body[at + len(NODE_NAMES_KEY) : -len(CLOSING_BRACE)])
        if names is None:
            return None
        pod = self._pods.get(head)
        if pod is None:
            pod = self._pod(head)
            if pod is None:
                return None
            if len(self._pods) >= RECENT_PODS:
                del self._pods[next(iter(self._pods))]
            self._pods[head] = pod
        return wire.ExtenderArgs(pod, names, None)

    def _pod(self, head: bytes) -> dict[str, Any] | None:
        """The pod of a body whose head (all before ``NodeNames``) is ``head``; None when the
        stand-in does not close a top-level object holding one ``NodeNames``."""
        try:
            raw = orjson.loads(head + STAND_IN)
        except orjson.JSONDecodeError:
            return None
        if sum(1 for key in raw if key.lower() == NODE_NAMES_FIELD) != 1:
            return None
        return wire.parse_pod(wire.fold_keys(raw).get("pod"))

    def _node_list(self, raw: bytes) -> Sequence[str] | None:
        if len(raw) < MIN_REMEMBERED_BYTES:
            return _short_list(raw)
        known = next((names for names in self._recent if names.raw == raw), None)
        if known is not None:
            return known
        names = NodeNameList.parse(raw)
        if names is not None:
            self._recent = [names, *self._recent[: RECENT_LISTS - 1]]
        return names


def _short_list(raw: bytes) -> list[str] | None:
    """A short list (prioritize's survivors, a completion's one node) as Python strings:
    decoding a few names costs less than the compiled scan's call. None unless it is a JSON
    array of strings, as the general path requires."""
    try:
        names = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(names) is list and all(type(name) is str for name in names):
        return names
    return None
