"""Node lists kept as bytes: which arrays count as plain, and the names they give back; the
cluster's name table maps them to node indices as a dict would."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.node_list import FIRST_PLAIN_BYTE, LAST_PLAIN_BYTE, NodeNameList
from extender.node_table import UNKNOWN, NodeNameTable

names = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), max_size=8)


def is_plain(name: str) -> bool:
    return all(FIRST_PLAIN_BYTE <= ord(c) <= LAST_PLAIN_BYTE and c not in '"\\' for c in name)


@settings(max_examples=300, deadline=None)
@given(names)
def test_compact_arrays_of_plain_strings_parse_to_their_names(listed: list[str]):
    parsed = NodeNameList.parse(orjson.dumps(listed))
    assert (parsed is not None) == all(map(is_plain, listed))
    if parsed is not None:
        assert len(parsed) == len(listed) and list(parsed) == listed and parsed == listed
        assert [parsed[i] for i in range(-len(listed), len(listed))] == listed * 2
        assert parsed[1:3] == listed[1:3]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[",
        b"]",
        b"[,]",
        b'["a",]',
        b'[,"a"]',
        b'["a" ]',
        b'[ "a"]',
        b'["a"',
        b'"a"]',
        b'["a"]]',
        b'["a","b"x]',
        b'["a""b"]',
        b"[1]",
        b"[null]",
        b'["\\n"]',
        b'["\xc3\xa9"]',
        b'["a\tb"]',
        b"{}",
    ],
)
def test_anything_else_is_left_to_the_general_decoder(raw: bytes):
    assert NodeNameList.parse(raw) is None


def test_lists_compare_by_content():
    a, b = NodeNameList.parse(b'["x","y"]'), NodeNameList.parse(b'["x","y"]')
    listed = ["x", "y"]
    assert a == b and a == listed and listed == a and a != ["y", "x"]
    assert NodeNameList.parse(b"[]") == [] and len(NodeNameList.parse(b"[]")) == 0


cluster_names = st.lists(
    st.text(st.sampled_from("ab-.0"), min_size=1, max_size=5), unique=True, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(cluster_names, st.lists(st.text(st.sampled_from("ab-.0"), max_size=6), max_size=40))
def test_table_maps_names_as_a_dict_would(known: list[str], asked: list[str]):
    table = NodeNameTable(known)
    index = {name: i for i, name in enumerate(known)}
    listed = NodeNameList.parse(orjson.dumps(asked))
    assert table.lookup(listed).tolist() == [index.get(n, UNKNOWN) for n in asked]
