"""``preferred_level`` in the fast path, on random clusters and gangs: when one domain of the
preferred level can hold the whole gang the answer stays inside one (the placement that
``required_level`` of the same level gets), and when none can the gang still starts, wider,
whenever the gang without any level constraint would."""

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import GangSpecError
from phalanx.scheduler.placement import Placement

from tests.placement_helpers import assert_valid_placement, half_busy
from tests.test_placement_determinism import gangs
from tests.topology_strategies import clusters


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), data=st.data(), seed=st.integers(0, 2**16))
def test_preferred_level_stays_inside_when_it_can_and_widens_when_it_cannot(cluster, data, seed):
    state = half_busy(cluster, seed)
    levels = state.compiled.level_names
    drawn = data.draw(gangs(levels))
    level = data.draw(
        st.sampled_from([levels[0], *levels[:-1]]) if len(levels) > 1 else st.just(levels[0])
    )
    free = dataclasses.replace(drawn, min_members=0, required_level=None, preferred_level=None)
    preferring = dataclasses.replace(free, preferred_level=level)
    requiring = dataclasses.replace(free, required_level=level)
    try:
        unconstrained = place(free, state)
    except GangSpecError:
        return
    preferred = place(preferring, state)
    required = place(requiring, state)
    if isinstance(required, Placement):
        assert preferred == required, "a preferred domain had room but the gang went wider"
        inside = {
            int(state.compiled.node_domain[state.compiled.level_index(level), m.node_index])
            for m in preferred.members
        }
        assert len(inside) == 1
    if isinstance(unconstrained, Placement):
        assert isinstance(preferred, Placement), f"preferred_level refused a gang: {preferred}"
        assert_valid_placement(preferring, preferred, state)
