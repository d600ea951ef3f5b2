"""A filter reply that rejects every offered node for one reason, as one entry.

A gang member filtered before its gang is complete (kube-scheduler sends ``n - 1`` of them per
gang of ``n``) is rejected on every offered node for one reason. Listed node by node that reply
is about 740 KB on 10,000 nodes: more server time than planning a member, and a body
kube-scheduler decodes in its one scheduling loop for every such attempt. kube-scheduler reads
the failed maps only to set the status of each node they name (``findNodesThatPassExtenders``
in ``pkg/scheduler/schedule_one.go``); a node the reply leaves out is dropped from the feasible
list all the same, with the status every absent node has, ``UnschedulableAndUnresolvable``
(``framework.NewDefaultNodeToStatus``). So a rejection for a reason preemption cannot help
with (waiting for members, a link hold, a gang that never fits or is malformed:
:data:`extender.why_not.ONE_ENTRY_CODES`) carries one entry, :data:`REJECTION_KEY` (no node can
have that name: node names are lowercase DNS subdomains), with the reason, in ``FailedNodes``
or ``FailedAndUnresolvableNodes`` as the decision says. The pod's event then reads "0/10000
nodes are available: 1 <reason>." where a listed reply read "10000 <reason>", and
kube-scheduler's preemption counts the nodes as "Preemption is not helpful for scheduling".
Other rejections are listed node by node, so that its preemption still looks at them; those
are written from the request's bytes (:func:`listed_rejection_body`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property

import orjson
from phalanx.extender.node_list import NodeNameList

REJECTION_KEY = "Phalanx: every offered node"
"""The one key of a rejection of every offered node."""
REPLY_HEAD = b'{"Nodes":null,"NodeNames":[],'
FAILED_KEY = b'"FailedNodes":'
UNRESOLVABLE_KEY = b'"FailedAndUnresolvableNodes":'
REPLY_TAIL = b'"Error":""}'


class SameReason(Mapping[str, str]):
    """``dict.fromkeys(names, reason)``, built only when read as a mapping: the reply writer
    reads :attr:`reason` alone (:func:`one_entry_rejection`)."""

    def __init__(self, names: Sequence[str], reason: str, one_entry: bool = False) -> None:
        self.names = names
        self.reason = reason
        self.one_entry = one_entry
        """Written as one entry (:func:`one_entry_rejection`): the reason is one kube-scheduler's
        preemption cannot help with."""

    @cached_property
    def _reasons(self) -> dict[str, str]:
        return dict.fromkeys(self.names, self.reason)

    def __getitem__(self, name: str) -> str:
        return self._reasons[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._reasons)

    def __len__(self) -> int:
        return len(self._reasons)

    def __bool__(self) -> bool:
        return len(self.names) > 0

    def __repr__(self) -> str:
        return f"SameReason({len(self.names)} names, {self.reason!r})"


def one_entry_rejection(
    failed: Mapping[str, str], unresolvable: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]] | None:
    """``(failed, unresolvable)`` as the reply writes them when a decision rejects every
    offered node for one reason that preemption cannot help with (a non-empty
    :class:`SameReason` marked ``one_entry`` in one of the two maps and nothing in the other):
    one entry, :data:`REJECTION_KEY`, with the reason. None otherwise (the maps are listed as
    they are)."""
    same = unresolvable if unresolvable else failed
    if not isinstance(same, SameReason) or (failed and unresolvable) or not same:
        return None
    if not same.one_entry:
        return None
    entry = {REJECTION_KEY: same.reason}
    return ({}, entry) if unresolvable else (entry, {})


def same_value_object(listed: bytes, count: int, value: bytes) -> bytes | None:
    """``{"<name 0>":<value>,"<name 1>":<value>,...}`` from ``["<name 0>","<name 1>",...]``, a
    compact array of ``count`` (> 0) plain strings (:class:`~extender.node_list.NodeNameList`),
    and ``value``, an encoded JSON value; None when a name holds a comma. With no comma inside
    a name, the array's commas are its ``count - 1`` separators, each between two quotes, so
    ``","`` occurs only there and each becomes ``":<value>,"``."""
    if listed.count(b",") != count - 1:
        return None
    between = b'":' + value + b',"'
    return b"".join((b"{", listed[1:-1].replace(b'","', between), b":", value, b"}"))


def listed_rejection_body(
    failed: Mapping[str, str], unresolvable: Mapping[str, str], names_distinct: bool
) -> bytes | None:
    """The encoded ``ExtenderFilterResult`` of a decision that rejects every offered node with
    one reason, listed node by node, when it can be written from the request's bytes (about
    0.25 ms for 10,000 names, where decoding the names, building the dict and encoding it took
    about 1.7 ms): the list ``["a","b",...]`` with each ``","`` replaced by ``":<reason>,"``
    is byte for byte what encoding ``dict.fromkeys(names, reason)`` gives when the reasons are a
    the reasons are a :class:`SameReason` over a non-empty
    :class:`~extender.node_list.NodeNameList` whose names are distinct (a dict keeps one entry
    per name) and hold no comma; else None."""
    same = unresolvable if unresolvable else failed
    if not isinstance(same, SameReason) or (failed and unresolvable) or not names_distinct:
        return None
    names = same.names
    if not isinstance(names, NodeNameList) or not len(names):
        return None
    members = same_value_object(names.raw, len(names), orjson.dumps(same.reason))
    if members is None:
        return None
    if unresolvable:
        return b"".join(
            (REPLY_HEAD, FAILED_KEY, b"{},", UNRESOLVABLE_KEY, members, b",", REPLY_TAIL)
        )
    return b"".join((REPLY_HEAD, FAILED_KEY, members, b",", UNRESOLVABLE_KEY, b"null,", REPLY_TAIL))
