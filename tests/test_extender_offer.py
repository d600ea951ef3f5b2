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
