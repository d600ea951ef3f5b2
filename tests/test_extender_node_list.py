"""Node lists kept as bytes: which arrays count as plain, and the names they give back; the
cluster's name table maps them to node indices as a dict would."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.extender.node_list import FIRST_PLAIN_BYTE, LAST_PLAIN_BYTE, NodeNameList
from phalanx.extender.node_table import UNKNOWN, NodeNameTable

names = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=20), max_size=8)


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


STRUCTURE = [b"[", b"]", b'"', b",", b"\\", b"a", b"b0", b"\x7f", b"\x80", b"\x1f", b" ", b"~"]
"""Bytes around which the word-at-a-time scan could go wrong: structure, escapes and the
first/last bytes inside and outside the plain range."""


def reference(raw: bytes) -> list[str] | None:
    """What the scan must answer: the names when ``raw`` is a compact array of plain strings
    (so exactly what a JSON encoder writes for them), else None."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and is_plain(v) for v in value):
        return None
    return value if orjson.dumps(value) == raw else None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(STRUCTURE), max_size=40).map(b"".join))
def test_any_bytes_scan_as_a_json_decoder_reads_them(raw: bytes):
    parsed = NodeNameList.parse(raw)
    expected = reference(raw)
    assert (parsed is None) == (expected is None)
    if parsed is not None:
        assert list(parsed) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(st.sampled_from("ab-.0~ "), min_size=1, max_size=30), min_size=1, max_size=12),
    st.integers(0, 400),
    st.sampled_from([0x00, 0x1F, 0x7F, 0x80, 0xFF, ord('"'), ord("\\")]),
)
def test_one_bad_byte_in_any_name_rejects_the_list(listed: list[str], at: int, bad: int):
    raw = bytearray(orjson.dumps(listed))
    inside = [i for i in range(len(raw)) if raw[i] not in b'[]",']
    raw[inside[at % len(inside)]] = bad
    assert reference(bytes(raw)) is None
    assert NodeNameList.parse(bytes(raw)) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab-.0"), max_size=30), min_size=1, max_size=10))
def test_equal_names_hash_equal_wherever_they_lie(listed: list[str]):
    parsed = NodeNameList.parse(orjson.dumps(listed))
    again = NodeNameList.parse(orjson.dumps(list(reversed(listed))))
    by_name = dict(zip(listed, parsed.hashes.tolist(), strict=True))
    assert dict(zip(reversed(listed), again.hashes.tolist(), strict=True)) == by_name


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
    st.text(st.sampled_from("ab-.0"), min_size=1, max_size=20), unique=True, max_size=40
)


@settings(max_examples=300, deadline=None)
@given(cluster_names, st.lists(st.text(st.sampled_from("ab-.0"), max_size=21), max_size=40))
def test_table_maps_names_as_a_dict_would(known: list[str], asked: list[str]):
    table = NodeNameTable(known)
    index = {name: i for i, name in enumerate(known)}
    listed = NodeNameList.parse(orjson.dumps(asked))
    resolved = table.resolve(listed)
    expected = [index.get(n, UNKNOWN) for n in asked]
    assert resolved.found.tolist() == expected
    assert resolved.unknown == expected.count(UNKNOWN)
    assert resolved.offered.tolist() == [name in asked for name in known]
    assert resolved.distinct == len({n for n in asked if n in index})


def test_names_alike_but_for_one_byte_or_their_length_stay_apart():
    stem = "rack-07.node-0123456789"  # crosses two word boundaries
    known = [stem[:n] for n in range(1, len(stem) + 1)] + [stem[:-1] + "x", stem + "\u00e9"]
    table = NodeNameTable(known)
    asked = [*known[:-1], stem + "0", stem[:8] + "X" + stem[9:], ""]
    listed = NodeNameList.parse(orjson.dumps(asked))
    index = {name: i for i, name in enumerate(known)}
    assert table.resolve(listed).found.tolist() == [index.get(n, UNKNOWN) for n in asked]
