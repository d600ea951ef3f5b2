"""Writing the decision log's lines without the logging module's per-record machinery.

A plan's line is written with every filter's reply. Through ``Logger.info`` it cost about 60
us of the server's time (the record, the handler's lock and filters, the formatter's date
formatting, the line), some 12 % of a one-member filter + prioritize, where the same text
costs a fraction of that to build and write. ``phalanx serve`` owns the process's logging
(:func:`extender.decision_log.configure_logging` puts one handler on the root logger), so
there a decision's line is formatted exactly as that handler's formatter would format it and
written to its stream under its lock. Whenever the route a record would take is anything else
(a handler or filter added on the way, a handler level above INFO), the line goes through
``logging`` as before; so does a line whose direct write fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""The text format's line (``phalanx serve --log-format text``)."""
JSON_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
"""The ``ts`` field's format in JSON lines (:class:`extender.decision_log.JsonFormatter`)."""
MS_PER_S = 1000
LEVEL_NAME = logging.getLevelName(logging.INFO)


class DirectLines:
    """Formats and writes INFO lines as ``handler`` (the only handler, on the root logger)
    would; ``json`` says which of ``phalanx serve``'s two formatters it has."""

    def __init__(self, handler: logging.StreamHandler[Any], json: bool) -> None:
        self.handler = handler
        self.json = json
        self._second: tuple[int, str] = (-1, "")
        """The second the date text was made for, and the text: one tuple, replaced whole, so
        that a thread never pairs one second's number with another's text."""

    def route_is_ours(self, logger: logging.Logger) -> bool:
        """Whether an INFO record of ``logger`` would reach only this handler, unfiltered:
        checked on every line (a few attribute reads), so that a handler or filter added
        later is honoured."""
        handler = self.handler
        if handler.filters or handler.level > logging.INFO:
            return False
        node: logging.Logger | None = logger
        while node is not None:
            if node.filters:
                return False
            if node.parent is None:  # the root logger
                return len(node.handlers) == 1 and node.handlers[0] is handler
            if node.handlers or not node.propagate:
                return False
            node = node.parent
        return False

    def write(self, logger_name: str, fields: Mapping[str, Any], text: Callable[[], str]) -> None:
        """One line: ``fields`` at the top level of a JSON object, or ``text()`` after the
        text format's time, level and logger name. Raises what the stream raises."""
        now = time.time()
        if self.json:
            doc = {
                "ts": time.strftime(JSON_TIME_FORMAT, self._converter(now)),
                "severity": LEVEL_NAME,
                "logger": logger_name,
            }
            doc.update(fields)
            line = orjson.dumps(doc, default=str).decode()
        else:
            line = TEXT_FORMAT % {
                "asctime": self._asctime(now),
                "levelname": LEVEL_NAME,
                "name": logger_name,
                "message": text(),
            }
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        finally:
            handler.release()

    def _converter(self, now: float) -> time.struct_time:
        formatter = self.handler.formatter
        converter = formatter.converter if formatter is not None else time.localtime
        return converter(now)

    def _asctime(self, now: float) -> str:
        """``logging.Formatter.formatTime`` without a date format, its date and time text
        kept for the current second (the line of every plan formatted it again)."""
        second = int(now)
        formatter = self.handler.formatter or logging.Formatter()
        kept = self._second
        if kept[0] != second:
            text = time.strftime(formatter.default_time_format, self._converter(now))
            kept = self._second = (second, text)
        return formatter.default_msec_format % (kept[1], (now - second) * MS_PER_S)
