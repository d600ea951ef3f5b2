"""Decision lines written past the logging module (extender/decision_lines.py): the same text
as the configured handler's formatter gives, and the logging path whenever the record's route
is not just that handler."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from phalanx.extender import decision_log
from phalanx.extender.decision_lines import DirectLines
from phalanx.extender.decision_log import LOGGER_NAME, JsonFormatter, text_line

FIELDS = {
    "event": "plan",
    "gang": "ml/t",
    "members": ["t-0", "t-1"],
    "nodes": ["a", "b"],
    "cost": {"communication": 0.5, "total": 1.25},
    "time": 1234.5,
}
INSTANT_S = 1_765_000_123.4567


@pytest.fixture
def root_logging():
    """The root logger's handlers and level, and the direct writer, restored afterwards."""
    saved = (logging.root.handlers[:], logging.root.level, decision_log._direct_lines)
    yield
    handlers, level, direct = saved
    logging.basicConfig(level=level, handlers=handlers, force=True)
    decision_log._direct_lines = direct


def _handler(json: bool) -> logging.StreamHandler[io.StringIO]:
    handler = logging.StreamHandler(io.StringIO())
    formatter = JsonFormatter() if json else logging.Formatter(decision_log.TEXT_FORMAT)
    handler.setFormatter(formatter)
    return handler


def _formatted(handler: logging.Handler, created_s: float) -> str:
    """What the handler's formatter makes of the decision's record at ``created_s``."""
    record = logging.makeLogRecord(
        {
            "name": LOGGER_NAME,
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "%s",
            "args": (text_line(FIELDS),),
            "decision": FIELDS,
            "created": created_s,
            "msecs": (created_s - int(created_s)) * 1000,
        }
    )
    assert handler.formatter is not None
    return handler.formatter.format(record)


@pytest.mark.parametrize("json", [False, True])
def test_a_direct_line_is_what_the_formatter_writes(json, monkeypatch):
    handler = _handler(json)
    direct = DirectLines(handler, json=json)
    for instant in (INSTANT_S, INSTANT_S + 0.5, INSTANT_S + 1.001):
        monkeypatch.setattr("time.time", lambda instant=instant: instant)
        direct.write(LOGGER_NAME, FIELDS, lambda: text_line(FIELDS))
    lines = handler.stream.getvalue().splitlines()
    expected = [_formatted(handler, t) for t in (INSTANT_S, INSTANT_S + 0.5, INSTANT_S + 1.001)]
    assert lines == expected
    if json:
        assert orjson.loads(lines[0])["nodes"] == ["a", "b"]


def test_the_route_is_ours_only_while_our_handler_is_alone_and_unfiltered(root_logging):
    handler = _handler(json=False)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    direct = DirectLines(handler, json=False)
    logger = logging.getLogger(LOGGER_NAME)
    assert direct.route_is_ours(logger)

    extra = logging.NullHandler()
    logging.root.addHandler(extra)
    assert not direct.route_is_ours(logger)
    logging.root.removeHandler(extra)

    logger.addHandler(extra)
    assert not direct.route_is_ours(logger)
    logger.removeHandler(extra)

    quiet = logging.Filter("nothing")
    logger.addFilter(quiet)
    assert not direct.route_is_ours(logger)
    logger.removeFilter(quiet)

    handler.setLevel(logging.WARNING)
    assert not direct.route_is_ours(logger)
    handler.setLevel(logging.NOTSET)

    logger.propagate = False
    try:
        assert not direct.route_is_ours(logger)
    finally:
        logger.propagate = True
    assert direct.route_is_ours(logger)


def test_decisions_reach_an_added_handler_through_logging(root_logging):
    """A handler added after configure_logging sees every decision: the direct path steps
    aside."""
    stream = io.StringIO()
    decision_log.configure_logging("text")
    logging.root.handlers[0].setStream(stream)
    log = decision_log.DecisionLog(clock=lambda: 7.0)
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append  # type: ignore[method-assign]

    log._emit("plan", {"gang": "ml/a"})
    logging.root.addHandler(keep)
    log._emit("plan", {"gang": "ml/b"})

    assert [r.decision["gang"] for r in records] == ["ml/b"]  # type: ignore[attr-defined]
    lines = stream.getvalue().splitlines()
    assert [line.split(" plan ")[1] for line in lines] == [
        "gang=ml/a time=7.0",
        "gang=ml/b time=7.0",
    ]


def test_a_failing_direct_write_falls_back_to_logging(root_logging):
    decision_log.configure_logging("json")
    records: list[logging.LogRecord] = []

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = logging.root.handlers[0]
    handler.setStream(Broken())
    handler.handleError = lambda record: records.append(record)  # type: ignore[method-assign]
    decision_log.DecisionLog(clock=lambda: 7.0)._emit("plan", {"gang": "ml/a"})
    (record,) = records  # logging tried too, and reported the stream's error its own way
    assert record.decision["gang"] == "ml/a"  # type: ignore[attr-defined]
