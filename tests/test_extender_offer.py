"""Offered node lists resolved once (``extender.masking.Offer``) answer every question as a pass
over the list would."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.extender.masking import MIN_REMEMBERED_OFFER, Offer, OfferedIndex
from phalanx.extender.node_list import NodeNameList
from phalanx.extender.node_table import NodeNameTable
from phalanx.topology.model import MILLI_PER_GPU
from phalanx.topology.presets import cluster_preset

COMPILED = cluster_preset("dgx-h100:8").compile()
NAMES = list(COMPILED.node_names)
GHOSTS = ["ghost-a", "ghost-b"]

offers = st.lists(st.sampled_from(NAMES + GHOSTS), max_size=12)


@settings(max_examples=200, deadline=None)
@given(offers, st.lists(st.sampled_from(range(len(NAMES))), max_size=8))
def test_offer_matches_a_pass_over_the_list(names: list[str], busy: list[int]):
    c = COMPILED.copy()
    for node in set(busy):  # fill some nodes, so only the others are worth withholding
        gpus = tuple(range(int(c.gpu_count[node])))
        c.allocate(node, gpus, MILLI_PER_GPU, int(c.cpu_free_milli[node]))
    offer = Offer.resolve(c, names)
    index = c.node_index
    assert offer.known.tolist() == [index[n] for n in names if n in index]
    assert [names[p] for p in offer.known_at] == [n for n in names if n in index]
    assert offer.unknown == [n for n in names if n not in index]
    for node in NAMES + GHOSTS:
        assert offer.includes(node) == (node in names)
    for i, node in enumerate(NAMES):
        assert offer.position(i) == (names.index(node) if node in names else None)
    has_free = (c.free_gpu_count > 0) | (c.cpu_free_milli > 0)
    expected = [i for i, node in enumerate(NAMES) if node not in names and has_free[i]]
    assert offer.withheld_nodes().tolist() == expected


TABLE = NodeNameTable(NAMES)


@settings(max_examples=200, deadline=None)
@given(offers)
def test_a_list_kept_as_bytes_resolves_as_the_names_do(names: list[str]):
    by_name = Offer.resolve(COMPILED, names)
    by_bytes = Offer.resolve(COMPILED, NodeNameList.parse(orjson.dumps(names)), TABLE)
    assert by_bytes.found.tolist() == by_name.found.tolist()
    assert by_bytes.offered.tolist() == by_name.offered.tolist()
    assert (by_bytes.unknown_count, by_bytes.offered_count) == (
        by_name.unknown_count,
        by_name.offered_count,
    )
    assert by_bytes.unknown == by_name.unknown
    assert by_bytes.known_at.tolist() == by_name.known_at.tolist()
    assert by_bytes.withheld_nodes().tolist() == by_name.withheld_nodes().tolist()


def test_an_offer_of_every_node_withholds_none_without_a_pass():
    offer = Offer.resolve(COMPILED, NodeNameList.parse(orjson.dumps(NAMES[::-1])), TABLE)
    assert offer.offered_count == COMPILED.n_nodes and offer.unknown == []
    assert offer.withheld_nodes().size == 0
    assert offer.known.tolist() == list(range(len(NAMES)))[::-1]


def test_index_remembers_long_lists_by_value_not_by_object():
    index = OfferedIndex(cluster_preset(f"dgx-h100:{MIN_REMEMBERED_OFFER}").compile())
    names = list(index.compiled.node_names)
    first = index(names)
    assert index(list(names)) is first
    names.pop()  # the caller's list changing later does not change what was remembered
    shorter = index(names)
    assert shorter is not first and shorter.known.size == first.known.size - 1
    assert np.array_equal(index(list(index.compiled.node_names)).known, first.known)


BIG = cluster_preset(f"dgx-h100:{MIN_REMEMBERED_OFFER + 16}").compile()
BIG_NAMES = list(BIG.node_names)
long_offers = st.lists(
    st.sampled_from(BIG_NAMES + GHOSTS), min_size=MIN_REMEMBERED_OFFER, max_size=90
)


def _questions(offer: Offer) -> tuple:
    """Every answer an offer gives, order-dependent ones included."""
    return (
        offer.offered.tolist(),
        offer.unknown_count,
        offer.offered_count,
        offer.distinct_known(),
        offer.unknown,
        offer.known.tolist(),
        offer.known_at.tolist(),
        [offer.position(i) for i in range(BIG.n_nodes)],
        [offer.includes(n) for n in BIG_NAMES + GHOSTS],
        offer.withheld_nodes().tolist(),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(long_offers, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_an_index_answers_reordered_lists_as_a_fresh_resolve(lists, rng):
    """Lists offered in turn, each also offered again in another order: whatever the index
    reuses, every answer is the one resolving that list alone gives."""
    index = OfferedIndex(BIG)
    table = NodeNameTable(BIG_NAMES)
    for names in lists:
        for order in (names, rng.sample(names, len(names))):
            raw = NodeNameList.parse(orjson.dumps(order))
            offer = index(raw)
            _questions(offer)  # resolved, so that a later order may reuse it
            assert _questions(offer) == _questions(Offer.resolve(BIG, raw, table))


def test_a_reordered_list_of_known_names_reuses_the_first_lookup():
    index = OfferedIndex(BIG)
    first = index(NodeNameList.parse(orjson.dumps(BIG_NAMES)))
    assert first.distinct_known()
    again = index(NodeNameList.parse(orjson.dumps(BIG_NAMES[::-1])))
    assert again.same_set is first
    assert again.offered is first.offered and "_resolved" not in again.__dict__
    assert again.position(0) == len(BIG_NAMES) - 1  # order questions still read this list


def test_lists_with_unknown_or_repeated_names_are_never_reused():
    index = OfferedIndex(BIG)
    for names in ([*BIG_NAMES[:-1], "ghost-a"], BIG_NAMES[:-1] + BIG_NAMES[:1]):
        first = index(NodeNameList.parse(orjson.dumps(names)))
        assert not first.distinct_known()
        again = index(NodeNameList.parse(orjson.dumps(names[::-1])))
        assert again.same_set is None


def test_an_unresolved_list_is_not_reused():
    """A filter answered without reading its offer (a gang waiting for members) leaves the
    list unresolved: the next order of it is looked up, not read from it."""
    index = OfferedIndex(BIG)
    index(NodeNameList.parse(orjson.dumps(BIG_NAMES)))
    again = index(NodeNameList.parse(orjson.dumps(BIG_NAMES[::-1])))
    assert again.same_set is None
    assert again.offered_count == BIG.n_nodes


def test_fingerprints_are_order_free_and_tell_lists_apart():
    parse = NodeNameList.parse
    assert (
        parse(orjson.dumps(BIG_NAMES)).fingerprint
        == parse(orjson.dumps(BIG_NAMES[::-1])).fingerprint
    )
    swapped = [*BIG_NAMES[:-1], "ghost-a"]
    repeated = BIG_NAMES[:-1] + BIG_NAMES[:1]
    prints = {parse(orjson.dumps(n)).fingerprint for n in (BIG_NAMES, swapped, repeated)}
    assert len(prints) == 3
