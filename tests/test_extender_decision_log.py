"""The decision log: one structured line per plan, bind and expiry (and re-plan, preemption),
JSON-parseable with the fields an operator needs, from the dry-run backend's planner."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from phalanx.extender.config import ServeConfig, parse_config
from phalanx.extender.decision_log import LOGGER_NAME, JsonFormatter, text_line
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang

NODES = [f"h100-{i:05d}" for i in range(4)]


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_plan_bind_expiry_lines_are_json_with_the_fields(lines: io.StringIO):
    now = [1000.0]
    planner = planner_factory(ServeConfig(), clock=lambda: now[0])(cluster_preset("dgx-h100:4"))
    backend = DryRunBackend(planner)
    pods = [kube_pod(f"t-{i}", annotations=phalanx_gang("t", 3)) for i in range(3)]
    for pod in pods:
        planner.filter(pod, NODES)
    now[0] += 2.0
    for pod in pods[:2]:
        node = planner.filter(pod, NODES).passing[0]
        meta = pod["metadata"]
        assert planner.bind("ml", meta["name"], meta["uid"], node, backend.binder) == ""
    now[0] += 1000.0
    assert planner.expire() == 1
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["plan", "bind", "bind", "expiry"]
    plan, bind, _, expiry = events
    assert plan["gang"] == "ml/t" and plan["queue"] == "default" and plan["tenant"] == "ml"
    assert len(plan["nodes"]) == 3 and plan["domain"] and plan["level"]
    assert plan["solver"] == "fast" and plan["time"] == 1000.0
    terms = {"communication", "fragmentation", "misalignment", "latency", "total"}
    assert set(plan["cost"]) == terms
    assert bind["pod"] == "ml/t-0" and bind["ok"] and bind["node"] in plan["nodes"]
    assert bind["gpus"] == "0,1,2,3,4,5,6,7" and bind["time"] == 1002.0
    assert expiry["released"] == ["t-2"] and expiry["kept_bound"] == ["t-0", "t-1"]
    assert expiry["reserved_for_s"] == 1002.0
    # the third member comes back: planned on its own, a re-plan; its bind completes the gang
    node = planner.filter(pods[2], NODES).passing[0]
    meta = pods[2]["metadata"]
    assert planner.bind("ml", meta["name"], meta["uid"], node, backend.binder) == ""
    replan, last = (json.loads(line) for line in lines.getvalue().splitlines()[4:])
    assert replan["event"] == "replan" and replan["members"] == ["t-2"]
    assert last["event"] == "bind" and last["start_latency_s"] == 1002.0
    assert planner.decisions.start_latency.cumulative()[-1] == ("+Inf", 1)
    assert planner.decisions.placement_cost.cumulative()[-1] == ("+Inf", 2)


def test_text_lines_and_the_log_format_setting():
    fields = {"event": "plan", "gang": "ml/t", "nodes": ["a", "b"], "cost": {"total": 1.0}}
    assert text_line(fields) == "plan gang=ml/t nodes=a,b cost=total:1.0"
    assert parse_config({"logFormat": "json"}).log_format == "json"
    assert ServeConfig().log_format == "text"
    with pytest.raises(ValueError, match="logFormat: expected text or json"):
        parse_config({"logFormat": "xml"})


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configured_logging_writes_whole_lines_without_caller_lookups(log_format, capsys):
    """``phalanx serve``'s logging: every line whole in either format, with the caller, thread
    and process lookups switched off (neither format shows them)."""
    from phalanx.extender.decision_log import configure_logging

    saved = (
        logging.root.handlers[:],
        logging.root.level,
        logging._srcfile,  # type: ignore[attr-defined]
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    try:
        configure_logging(log_format)
        records: list[logging.LogRecord] = []
        keep = logging.Handler()
        keep.emit = records.append  # type: ignore[method-assign]
        logging.root.addHandler(keep)
        fields = {"event": "plan", "gang": "ml/t", "nodes": ["a"]}
        logging.getLogger(LOGGER_NAME).info("%s", text_line(fields), extra={"decision": fields})
        (record,) = records
        assert (record.lineno, record.funcName) == (0, "(unknown function)")
        assert record.thread is None and record.process is None
    finally:
        handlers, level, srcfile, threads, processes, multi = saved
        logging.basicConfig(level=level, handlers=handlers, force=True)
        logging._srcfile = srcfile  # type: ignore[attr-defined]
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = (
            threads,
            processes,
            multi,
        )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    if log_format == "json":
        doc = json.loads(line)
        assert (doc["event"], doc["gang"], doc["nodes"], doc["severity"]) == (
            "plan",
            "ml/t",
            ["a"],
            "INFO",
        )
    else:
        assert line.endswith("INFO phalanx.decisions plan gang=ml/t nodes=a")
