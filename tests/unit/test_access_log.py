"""Access log lines: one line per request, whatever a client puts in its path."""

from __future__ import annotations

import io

from servoir.logs import AccessLog


def test_a_newline_in_a_path_cannot_forge_a_line() -> None:
    stream = io.StringIO()
    access = AccessLog("text", stream=stream)
    forged = "/v1/models/x\n2026-12-06 00:00:00,000 INFO servoir.access: FORGED:predict"
    access.record("tf_rest", "POST", forged, "x\r\nmodel", "", 400, 0.001)
    access.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "/v1/models/x\\n2026-12-06" in lines[0] and "model=x\\r\\nmodel" in lines[0]


def test_printable_names_are_written_as_they_are() -> None:
    stream = io.StringIO()
    access = AccessLog("text", stream=stream)
    access.record("tf_rest", "POST", "/v1/models/héllo:predict", "héllo", "2", 200, 0.001)
    access.flush()
    assert "/v1/models/héllo:predict model=héllo version=2 status=200" in stream.getvalue()
