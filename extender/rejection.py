"""A filter reply that rejects every offered node with one reason, written from the request's
bytes.

A gang member filtered before its gang is complete (kube-scheduler sends ``n - 1`` of them per
gang of ``n``) is rejected on every offered node, and the reply must list each node with the
reason. Decoding 10,000 names into strings, building the dict and encoding it took about
2 ms, more than planning a member; the names are already in the request as a compact array of
plain JSON strings (:mod:`extender.node_list`), so the reply's object is that array with its
separators replaced, byte for byte what ``orjson.dumps(dict.fromkeys(names, reason))`` writes
when the names are distinct.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property

import orjson
from phalanx.extender.node_list import NodeNameList

REPLY_HEAD = b'{"Nodes":null,"NodeNames":[],'
FAILED_KEY = b'"FailedNodes":'
UNRESOLVABLE_KEY = b'"FailedAndUnresolvableNodes":'
REPLY_TAIL = b'"Error":""}'


class SameReason(Mapping[str, str]):
    """``dict.fromkeys(names, reason)``, built only when read as a mapping: the reply writer
    reads :attr:`names` and :attr:`reason` instead."""

    def __init__(self, names: Sequence[str], reason: str) -> None:
        self.names = names
        self.reason = reason

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


def rejection_body(
    failed: Mapping[str, str], unresolvable: Mapping[str, str], names_distinct: bool
) -> bytes | None:
    """The encoded ``ExtenderFilterResult`` of a decision that rejects every offered node with
    one reason, when it can be written from the request's bytes: the reasons are a
    :class:`SameReason` over a non-empty :class:`~extender.node_list.NodeNameList` whose names
    are distinct (a dict keeps one entry per name) and hold no comma; else None."""
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
