"""Decisions are unchanged: every recorded replay and placement instance gives the same
per-job placements (nodes, GPUs, shares) and the same costs as the stored fixture.

The fixture was recorded before the placement hot path moved into compiled kernels; a speed-up
must leave it identical. Scenarios that need the public traces skip when they are absent.
"""

from __future__ import annotations

import pytest

from tests.placement_replay import SCENARIOS, load_fixture, normalised


@pytest.fixture(scope="module")
def expected():
    return load_fixture()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_decisions_unchanged(expected, scenario):
    records = SCENARIOS[scenario]()
    if records is None:
        pytest.skip(f"{scenario}: the public trace is absent")
    got = normalised(records)
    want = expected[scenario]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{scenario} decision {i}: {g} != {w}"
