"""``phalanx serve`` compiles its request path before it listens (extender/warmup.py)."""

from __future__ import annotations

import logging

from phalanx.extender.config import ServeConfig
from phalanx.extender.runtime import planner_factory
from phalanx.extender.warmup import warm_up


def test_warm_up_runs_a_gang_through_a_throwaway_planner_without_logging_decisions(caplog):
    with caplog.at_level(logging.INFO):
        seconds = warm_up(planner_factory(ServeConfig()))
    assert seconds > 0
    assert not [r for r in caplog.records if r.name == "phalanx.decisions"]
    assert any("request path compiled" in r.getMessage() for r in caplog.records)
