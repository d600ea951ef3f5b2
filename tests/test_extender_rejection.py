"""Rejections written from the request's bytes: the same bytes as the reply built from a dict,
and the general path wherever the two could differ."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.extender import wire
from phalanx.extender.node_list import NodeNameList
from phalanx.extender.rejection import (
    SameReason,
    rejection_body,
    same_value_object,
)
from phalanx.extender.why_not import reject

plain_names = st.lists(
    st.text(
        st.sampled_from(list("ab,-.:{}[] "))
        | st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
    ),
    min_size=1,
    max_size=12,
    unique=True,
)
reasons = st.text(max_size=40)


def dict_reply(names: list[str], reason: str, unresolvable: bool) -> bytes:
    reasons_by_name = dict.fromkeys(names, reason)
    if unresolvable:
        return wire.encode(wire.filter_reply([], unresolvable=reasons_by_name))
    return wire.encode(wire.filter_reply([], failed=reasons_by_name))


@settings(max_examples=300, deadline=None)
@given(plain_names, reasons, st.booleans())
def test_the_written_reply_is_the_dict_reply_byte_for_byte(names, reason, unresolvable):
    listed = NodeNameList.parse(orjson.dumps(names))
    assert listed is not None
    decision = reject(listed, reason, unresolvable=unresolvable)
    body = rejection_body(decision.failed, decision.unresolvable, names_distinct=True)
    if any("," in name for name in names):
        assert body is None
    else:
        assert body == dict_reply(names, reason, unresolvable)


@settings(max_examples=200, deadline=None)
@given(plain_names, reasons)
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
    assert rejection_body(repeated.failed, repeated.unresolvable, names_distinct=False) is None
    as_strings = reject(["a", "b"], "why")
    assert rejection_body(as_strings.failed, as_strings.unresolvable, names_distinct=True) is None
    empty = reject(NodeNameList.parse(b"[]"), "why", unresolvable=True)
    assert rejection_body(empty.failed, empty.unresolvable, names_distinct=True) is None
    commas = reject(NodeNameList.parse(orjson.dumps(["a", ",", "b,c"])), "why")
    assert rejection_body(commas.failed, commas.unresolvable, names_distinct=True) is None
    mixed = rejection_body({"a": "x"}, {"b": "y"}, names_distinct=True)
    assert mixed is None


def test_the_lazy_mapping_reads_as_the_dict():
    same = SameReason(["a", "b", "a"], "why")
    assert dict(same) == {"a": "why", "b": "why"} and len(same) == 2 and same["b"] == "why"
    assert same == {"a": "why", "b": "why"} and bool(same) and not SameReason([], "why")
