"""The running-gang views a cycle reads in place of a copy behave as the list they replace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.scheduler.running_view import TAIL_READ, CycleRunning, ValuesInPlace, derived

SEEN_INDICES = st.integers(min_value=-40, max_value=40)


def _same_as_list(view, expected: list, indices: list[int]) -> None:
    assert len(view) == len(expected)
    assert list(view) == expected
    assert bool(view) == bool(expected)
    for i in indices:
        if -len(expected) <= i < len(expected):
            assert view[i] == expected[i]
        else:
            with pytest.raises(IndexError):
                view[i]
    assert view[1:-1] == expected[1:-1]


@settings(max_examples=60, deadline=None)
@given(
    base=st.lists(st.integers(), max_size=30),
    started=st.lists(st.integers(), max_size=5),
    indices=st.lists(SEEN_INDICES, max_size=12),
    threshold=st.integers(min_value=-5, max_value=5),
)
def test_cycle_running_is_base_then_started(base, started, indices, threshold):
    view = CycleRunning(base)
    expected = list(base)
    for item in started:
        view.append(item)
        expected.append(item)
    _same_as_list(view, expected, indices)
    before = list(base)
    view.keep(lambda r: r > threshold)
    expected = [r for r in expected if r > threshold]
    _same_as_list(view, expected, indices)
    assert base == before, "the caller's sequence is never written"


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(min_value=0, max_value=60), max_size=40, unique=True),
    indices=st.lists(SEEN_INDICES, max_size=12),
)
def test_values_in_place_reads_the_values_in_order(keys, indices):
    by_key = {k: f"plan-{k}" for k in keys}
    _same_as_list(ValuesInPlace(by_key), list(by_key.values()), indices)
    # the tail is read by walking back, the rest from one list; both give the same items
    view = ValuesInPlace(by_key)
    tail = [view[-1 - back] for back in range(min(TAIL_READ + 2, len(by_key)))]
    assert tail == list(reversed(list(by_key.values())))[: len(tail)]


def test_values_in_place_refuses_a_change_while_iterated():
    by_key = {1: "a", 2: "b"}
    view = ValuesInPlace(by_key)
    with pytest.raises(RuntimeError):
        for _ in view:
            by_key[3] = "c"


def test_derived_figures_are_made_once_per_state_of_a_view():
    calls = []

    def total(running) -> int:
        calls.append(1)
        return sum(running)

    view = CycleRunning([1, 2])
    assert derived(view, "total", total) == 3 and derived(view, "total", total) == 3
    assert len(calls) == 1
    view.append(4)
    assert derived(view, "total", total) == 7
    view.keep(lambda r: r != 2)
    assert derived(view, "total", total) == 5
    assert len(calls) == 3
    in_place = ValuesInPlace({"a": 1, "b": 2})
    assert derived(in_place, "total", total) == derived(in_place, "total", total) == 3
    assert len(calls) == 4
    plain = [1, 2]
    assert derived(plain, "total", total) == 3
    plain.append(3)
    assert derived(plain, "total", total) == 6, "a plain sequence is computed every time"
