"""A cancelled gRPC handler is recorded as what ended it: its deadline or its client."""

from __future__ import annotations

import pytest

from servoir.errors import Code
from servoir.frontends.grpc.access import cancel_code


class Context:
    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def time_remaining(self) -> float | None:
        return self._remaining


@pytest.mark.parametrize(
    ("remaining", "code"),
    [(0.0, Code.DEADLINE_EXCEEDED), (-0.5, Code.DEADLINE_EXCEEDED), (5.0, Code.CANCELLED),
     (None, Code.CANCELLED)],
)  # fmt: skip
def test_cancel_code(remaining: float | None, code: Code) -> None:
    assert cancel_code(Context(remaining)) is code
