"""Logging set-up: human-readable lines by default, JSON lines with --log_format=json.

Access lines (see AccessLog) carry the logger name `servoir.access` and, in JSON, the keys
protocol, method, route, model, version, status and latency_ms.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

import orjson

ACCESS_LOGGER = "servoir.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLog:
    """One line per request (never the payload), buffered and written by `flush`.

    Access lines bypass `logging`: a LogRecord and a handler write per request cost more
    than a small model's whole request, so lines are formatted (text, or JSON with the same
    fields as the JSON log format) into a buffer that the server flushes every few hundred
    milliseconds, at 256 lines, and at shutdown. They go to stderr with the other logs.
    """

    def __init__(self, fmt: str = "text", enabled: bool = True, stream: TextIO | None = None):
        self.enabled = enabled
        self._json = fmt == "json"
        self._stream = stream
        self._buffer: list[str] = []
        self._clock = _Clock()

    def record(
        self,
        protocol: str,
        method: str,
        route: str,
        model: str,
        version: str,
        status: int | str,
        seconds: float,
    ) -> None:
        if self._json:
            latency_ms = round(seconds * 1000, 3)
            line = orjson.dumps(
                {
                    "time": self._clock.now(),
                    "level": "info",
                    "logger": ACCESS_LOGGER,
                    "message": f"{method} {route} {status}",
                    "protocol": protocol,
                    "method": method,
                    "route": route,
                    "model": model,
                    "version": version,
                    "status": status,
                    "latency_ms": latency_ms,
                }
            ).decode()
        else:
            line = (
                f"{self._clock.now()} INFO servoir.access: {protocol} {method} "
                f"{_printable(route)} model={_printable(model) or '-'} version={version or '-'} "
                f"status={status} {seconds * 1000:.3f}ms"
            )
        self._buffer.append(line)
        if len(self._buffer) >= 256:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        stream = self._stream or sys.stderr
        stream.write("\n".join(lines) + "\n")
        stream.flush()


class _Clock:
    """UTC timestamps with the date part formatted once a second (strftime costs ~2 us)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


def _printable(text: str) -> str:
    """`text` with control characters escaped: a path or model name from a client (%0a
    decoded) must not start a forged line of the text log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
