"""A rejection of every offered node for one reason is one entry on the wire
(``extender.rejection``); anything else is listed node by node."""

from __future__ import annotations

from unittest import mock

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.extender import wire
from phalanx.extender.config import ServeConfig
from phalanx.extender.node_list import NodeNameList
from phalanx.extender.node_table import NodeNameTable
from phalanx.extender.rejection import (
    REJECTION_KEY,
    SameReason,
    listed_rejection_body,
    one_entry_rejection,
    same_value_object,
)
from phalanx.extender.runtime import planner_factory
from phalanx.extender.why_not import ONE_ENTRY_CODES, code_in, reject, waiting_text
from phalanx.scheduler.reasons import Reason
from phalanx.topology.presets import cluster_preset

from tests.kube_objects import kube_pod, phalanx_gang

names_lists = st.lists(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')),
    min_size=1,
    max_size=12,
)
details = st.text(max_size=40)
codes = st.sampled_from([c.value for c in Reason])


@settings(max_examples=200, deadline=None)
@given(names_lists, codes, details, st.booleans(), st.booleans())
def test_rejections_preemption_cannot_help_with_are_one_entry(
    names, code, detail, unresolvable, as_bytes
):
    offered = NodeNameList.parse(orjson.dumps(names)) if as_bytes else names
    assert offered is not None
    reason = waiting_text("ml/g", code, detail)
    decision = reject(offered, reason, unresolvable=unresolvable)
    written = one_entry_rejection(decision.failed, decision.unresolvable)
    if not unresolvable and code not in ONE_ENTRY_CODES:
        assert written is None  # listed node by node: preemption still looks at the nodes
        return
    assert written is not None
    failed, unresolved = written
    entry = {REJECTION_KEY: reason}
    assert (failed, unresolved) == (({}, entry) if unresolvable else (entry, {}))
    reply = orjson.loads(wire.encode(wire.filter_reply([], failed, unresolved)))
    assert reply["NodeNames"] == [] and reply["Error"] == ""
    assert reply["FailedAndUnresolvableNodes" if unresolvable else "FailedNodes"] == entry


def test_the_code_is_read_from_the_message_only():
    assert code_in(waiting_text("ml/g", Reason.LINK_HOLD, "held")) == "link_hold"
    assert code_in("pod ml/p has finished") == ""
    assert code_in("gang ml/g: member m was deleted; planning again [x]: y") == ""


def test_other_decisions_are_listed():
    assert one_entry_rejection({"a": "x"}, {"b": "y"}) is None
    assert one_entry_rejection({"a": "x", "b": "x"}, {}) is None  # a plain dict: not known same
    mixed = one_entry_rejection(SameReason(["a"], "x", one_entry=True), {"b": "y"})
    assert mixed is None
    assert one_entry_rejection(SameReason([], "x", one_entry=True), {}) is None  # none offered


def test_the_key_is_no_node_name():
    """Node names are lowercase RFC 1123 subdomains: the key can never name a real node."""
    assert REJECTION_KEY.lower() != REJECTION_KEY or " " in REJECTION_KEY


def test_the_lazy_mapping_reads_as_the_dict():
    same = SameReason(["a", "b", "a"], "why")
    assert dict(same) == {"a": "why", "b": "why"} and len(same) == 2 and same["b"] == "why"
    assert same == {"a": "why", "b": "why"} and bool(same) and not SameReason([], "why")


def test_a_member_waiting_for_its_gang_is_answered_without_resolving_the_names():
    """The names of a filter that rejects every node for one reason are never looked up (a
    pass over 10,000 names per waiting member); a planned member's are."""
    planner = planner_factory(ServeConfig())(cluster_preset("dgx-h100:8"))
    names = NodeNameList.parse(orjson.dumps(planner.compiled.node_names))
    first, second = (kube_pod(f"w-{i}", annotations=phalanx_gang("w", 2)) for i in range(2))
    with mock.patch.object(NodeNameTable, "resolve", autospec=True) as resolve:
        waiting = planner.filter(first, names)
    assert not waiting.passing and resolve.call_count == 0
    assert one_entry_rejection(waiting.failed, waiting.unresolvable) is not None
    planned = planner.filter(second, names)
    assert len(planned.passing) == 1


# -- rejections listed node by node, written from the request's bytes

plain_names = st.lists(
    st.text(
        st.sampled_from(list("ab,-.:{}[] "))
        | st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
    ),
    min_size=1,
    max_size=12,
    unique=True,
)
listed_reasons = st.text(max_size=40).map(lambda d: waiting_text("ml/g", Reason.CAPACITY, d))


def dict_reply(names: list[str], reason: str, unresolvable: bool) -> bytes:
    reasons_by_name = dict.fromkeys(names, reason)
    if unresolvable:
        return wire.encode(wire.filter_reply([], unresolvable=reasons_by_name))
    return wire.encode(wire.filter_reply([], failed=reasons_by_name))


@settings(max_examples=300, deadline=None)
@given(plain_names, listed_reasons, st.booleans())
def test_the_written_reply_is_the_dict_reply_byte_for_byte(names, reason, unresolvable):
    """A rejection listed node by node (unresolvable ones are one entry on the server, but
    the writer serves both maps)."""
    listed = NodeNameList.parse(orjson.dumps(names))
    assert listed is not None
    decision = reject(listed, reason, unresolvable=unresolvable)
    body = listed_rejection_body(decision.failed, decision.unresolvable, names_distinct=True)
    if any("," in name for name in names):
        assert body is None
    else:
        assert body == dict_reply(names, reason, unresolvable)


@settings(max_examples=200, deadline=None)
@given(plain_names, listed_reasons)
def test_the_object_matches_its_dict_reference(names, reason):
    written = same_value_object(orjson.dumps(names), len(names), orjson.dumps(reason))
    if any("," in name for name in names):
        assert written is None
    else:
        assert written == orjson.dumps(dict.fromkeys(names, reason))


def test_lists_it_cannot_write_take_the_general_path():
    names = ["a", "b", "a"]
    listed = NodeNameList.parse(orjson.dumps(names))
    repeated = reject(listed, "why")
    body = listed_rejection_body(repeated.failed, repeated.unresolvable, names_distinct=False)
    assert body is None
    as_strings = reject(["a", "b"], "why")
    body = listed_rejection_body(as_strings.failed, as_strings.unresolvable, names_distinct=True)
    assert body is None
    empty = reject(NodeNameList.parse(b"[]"), "why", unresolvable=True)
    assert listed_rejection_body(empty.failed, empty.unresolvable, names_distinct=True) is None
    commas = reject(NodeNameList.parse(orjson.dumps(["a", ",", "b,c"])), "why")
    assert listed_rejection_body(commas.failed, commas.unresolvable, names_distinct=True) is None
    mixed = listed_rejection_body({"a": "x"}, {"b": "y"}, names_distinct=True)
    assert mixed is None
