"""Running a blocking model call from the event loop: inline when measured fast, else on the
inference executor, bounded by the request's deadline.

A thread hop costs tens of microseconds, more than a small model's whole run, so a model
whose runs are measured (exponentially weighted) below `inline_run_max_seconds` runs on
the loop; anything slower, and every model until it has been measured, runs on the
executor so the loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from servoir.errors import Code, ServingError
from servoir.runtimes.registry import RuntimeContext

T = TypeVar("T")

_EWMA_WEIGHT = 0.1


class BlockingRunner:
    """One per loaded model: it holds that model's measured run time."""

    def __init__(self, context: RuntimeContext, *, allow_inline: bool = True) -> None:
        self._context = context
        self._allow_inline = allow_inline
        self._ewma: float | None = None

    @property
    def inline(self) -> bool:
        """The next run executes on the event loop (the model was measured fast)."""
        ewma = self._ewma
        inline_max = self._context.options.inline_run_max_seconds
        return self._allow_inline and ewma is not None and ewma < inline_max

    async def run(self, fn: Callable[[], T], deadline: float | None) -> T:
        if self.inline:
            return self._timed(fn)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._context.executor, self._timed, fn)
        if deadline is None:
            return await future
        try:
            # shield: the run cannot be interrupted, and cancelling the future would only
            # hide its exception from the loop; it finishes in the background.
            return await asyncio.wait_for(
                asyncio.shield(future), max(deadline - time.monotonic(), 0.0)
            )
        except TimeoutError:
            future.add_done_callback(_consume)
            raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded") from None

    def _timed(self, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - started
        previous = self._ewma
        self._ewma = elapsed if previous is None else previous + _EWMA_WEIGHT * (elapsed - previous)
        return result


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned run's exception so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
