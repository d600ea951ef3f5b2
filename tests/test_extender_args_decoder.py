"""Decoding filter/prioritize bodies with the node list kept as bytes (and long lists
remembered) gives exactly what the general path (``wire.parse_extender_args(wire.decode(body))``)
gives, for every body."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.extender import wire
from phalanx.extender.args_decoder import (
    MIN_REMEMBERED_BYTES,
    RECENT_PODS,
    ExtenderArgsDecoder,
)
from phalanx.extender.node_list import NodeNameList

POD = {"metadata": {"name": "w-0", "namespace": "ml", "uid": "u1"}, "spec": {}}
NAMES = [f"h100-{i:05d}" for i in range(MIN_REMEMBERED_BYTES // 8)]


def kube_body(pod: object, names: list | None) -> bytes:
    """As kube-scheduler marshals ExtenderArgs: Pod, Nodes, NodeNames."""
    return orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})


def general(body: bytes) -> wire.ExtenderArgs | str:
    try:
        return wire.parse_extender_args(wire.decode(body))
    except wire.WireError as exc:
        return f"WireError: {exc}"


def decoded(decoder: ExtenderArgsDecoder, body: bytes) -> wire.ExtenderArgs | str:
    try:
        return decoder(body)
    except wire.WireError as exc:
        return f"WireError: {exc}"


@pytest.mark.parametrize("names", [NAMES, [], ["a"], ["", "x.y-z_0"]])
def test_kube_scheduler_bodies_keep_a_long_list_as_bytes(names: list[str]):
    """A long list is kept as its bytes; a short one (prioritize's survivors) is decoded."""
    args = ExtenderArgsDecoder()(kube_body(POD, names))
    assert isinstance(args.node_names, NodeNameList if names is NAMES else list)
    assert args == general(kube_body(POD, names))
    assert args.pod == POD and args.node_objects is None and list(args.node_names) == names


def test_a_repeated_long_list_is_scanned_once_and_shared():
    decoder = ExtenderArgsDecoder()
    first = decoder(kube_body(POD, NAMES))
    other_pod = {"metadata": {"name": "w-1", "namespace": "ml"}}
    second = decoder(kube_body(other_pod, NAMES))
    assert second.node_names is first.node_names and second.pod == other_pod


def test_a_repeated_head_is_parsed_once_and_the_memo_is_bounded():
    """prioritize repeats the filter's pod byte for byte: one decoded pod serves both."""
    decoder = ExtenderArgsDecoder()
    first = decoder(kube_body(POD, NAMES)).pod
    assert decoder(kube_body(POD, ["h100-00001"])).pod is first
    for i in range(RECENT_PODS):
        other = {"metadata": {"name": f"w-{i + 1}", "namespace": "ml"}}
        assert decoder(kube_body(other, ["a"])).pod == other
    again = decoder(kube_body(POD, ["a"])).pod
    assert again == POD and again is not first, "pushed out by newer heads"
    assert len(decoder._pods) == RECENT_PODS


def test_short_lists_do_not_push_a_long_one_out():
    decoder = ExtenderArgsDecoder()
    long_names = decoder(kube_body(POD, NAMES)).node_names
    for i in range(10):
        assert decoder(kube_body(POD, [f"n{i}"])).node_names == [f"n{i}"]
    assert decoder(kube_body(POD, NAMES)).node_names is long_names


TAIL = orjson.dumps(NAMES).decode() + "}"
POD_JSON = '{"metadata":{"name":"x"}}'


@pytest.mark.parametrize(
    "body",
    [
        # the list after a key whose escaped quote swallows the real key
        '{"Pod":' + POD_JSON + ',"NodeNames":null,"x\\"NodeNames":' + TAIL,
        '{"Pod":' + POD_JSON + ',"NodeNames":5,"x\\\\"NodeNames":' + TAIL,
        # another spelling of the key competes after folding
        '{"Pod":' + POD_JSON + ',"nodeNames":["a"],"NodeNames":' + TAIL,
        '{"nodenames":["a"],"Pod":' + POD_JSON + ',"NodeNames":' + TAIL,
        # the same key twice: the last one wins, as in the general path
        '{"NodeNames":["a"],"Pod":' + POD_JSON + ',"NodeNames":' + TAIL,
        # the list nested in the pod, not a top-level member
        '{"Pod":{"metadata":{"name":"x"},"NodeNames":' + TAIL + "}",
        # NodeNames first: the list does not end the body
        '{"NodeNames":' + orjson.dumps(NAMES).decode() + ',"Pod":' + POD_JSON + "}",
        # a head that is not JSON, a pod that is not a Pod, no pod at all
        '{"Pod":' + POD_JSON + ',,"NodeNames":' + TAIL,
        '{"Pod":3,"NodeNames":' + TAIL,
        '{"NodeNames":' + TAIL,
        # layouts kube-scheduler does not write
        '{"Pod": ' + POD_JSON + ', "NodeNames": ' + TAIL,
        '{"Pod":' + POD_JSON + ',"NodeNames":' + TAIL + "\n",
        '{"Pod":' + POD_JSON + ',"NodeNames":[ "a"]}',
        '{"Pod":' + POD_JSON + ',"NodeNames":["a",]}',
        '{"Pod":' + POD_JSON + ',"NodeNames":["a""b"]}',
        '{"Pod":' + POD_JSON + ',"NodeNames":["a\\u0062"]}',
        '{"Pod":' + POD_JSON + ',"NodeNames":["a",1]}',
        '{"Pod":' + POD_JSON + ',"NodeNames":"a"}',
        # Nodes mode
        '{"Pod":' + POD_JSON + ',"Nodes":{"items":[{"metadata":{"name":"a"}}]},"NodeNames":null}',
    ],
)
def test_unusual_bodies_get_the_general_answer(body: str):
    decoder = ExtenderArgsDecoder()
    decoder(kube_body(POD, NAMES))  # the list is remembered
    assert decoded(decoder, body.encode()) == general(body.encode())


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
plain_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6)
ints = st.integers(-(2**63), 2**63 - 1)
names_lists = st.one_of(
    st.just(NAMES),
    st.lists(plain_texts, max_size=5),
    st.lists(texts, max_size=5),
    st.lists(st.one_of(texts, ints, st.none()), min_size=1, max_size=3),
)
pods = st.one_of(
    st.just(POD),
    st.builds(
        lambda name, ns: {"metadata": {"name": name, "namespace": ns}},
        texts,
        st.one_of(texts, ints),
    ),
    ints,
)
key_spellings = st.sampled_from(["NodeNames", "nodeNames", "nodenames"])


@st.composite
def bodies(draw) -> bytes:
    """kube-scheduler's shape with random pods and lists, and other key orders, spellings,
    duplicate keys and whitespace."""
    pod, names = draw(pods), draw(names_lists)
    members = [("Pod", orjson.dumps(pod)), ("Nodes", b"null")]
    members += [(draw(key_spellings), orjson.dumps(names)) for _ in range(draw(st.integers(0, 2)))]
    members.append(("NodeNames", orjson.dumps(names if draw(st.booleans()) else NAMES)))
    order = draw(st.permutations(range(len(members))))
    if draw(st.booleans()):
        order = sorted(order)
    space = draw(st.sampled_from(["", "", " ", "\n"]))
    text = ("," + space).join(
        orjson.dumps(members[i][0]).decode() + ":" + space + members[i][1].decode() for i in order
    )
    return ("{" + text + "}" + draw(st.sampled_from(["", "", "\n"]))).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(bodies(), min_size=1, max_size=4))
def test_any_body_decodes_as_the_general_path_does(sequence: list[bytes]):
    decoder = ExtenderArgsDecoder()
    for body in sequence:
        assert decoded(decoder, body) == general(body)
