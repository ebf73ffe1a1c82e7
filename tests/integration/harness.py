"""A real Servoir server on ephemeral ports, run in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from servoir.server import Server, ServerConfig


def metric_values(text: str) -> dict[str, float]:
    """A Prometheus text page as {series with its labels: value}."""
    samples = (s.rsplit(" ", 1) for s in text.splitlines() if s and not s.startswith("#"))
    return {series: float(value) for series, value in samples}


class RunningServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="servoir-test", daemon=True)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self.server = Server(self.config)
            loop.run_until_complete(self.server.start())
        except BaseException as e:  # surfaced to the test by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def start(self, timeout: float = 60) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("server did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        """Run `fn` on the server's loop (manager and service are loop-bound)."""
        assert self._loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start a coroutine on the server's loop; the future gives its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return self.submit(coro).result(timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        """Block until `predicate` holds on the server's loop, woken by manager events."""
        assert self._loop is not None and self.server is not None
        manager = self.server.manager
        future = asyncio.run_coroutine_threadsafe(manager.wait_until(predicate), self._loop)
        future.result(timeout)

    def poll_until(
        self, predicate: Callable[[], bool], timeout: float = 30, *, on_loop: bool = True
    ) -> None:
        """For conditions no event announces (reference counts): check every 5 ms, bounded.
        `on_loop=False` checks in the caller's thread (a predicate that calls the server)."""
        deadline = time.monotonic() + timeout
        while not (self.call(predicate) if on_loop else predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met")
            time.sleep(0.005)

    @property
    def rest_url(self) -> str:
        assert self.server is not None and self.server.rest_port is not None
        return f"http://127.0.0.1:{self.server.rest_port}"

    def stop(self) -> None:
        if self._loop is None or self.server is None or self._error is not None:
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
