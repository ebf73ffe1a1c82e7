"""GoneWatch: a REST request whose client disconnects is cancelled; fast ones never listen."""

from __future__ import annotations

import asyncio

import pytest

from servoir.frontends.rest.asgi import ClientGone, GoneWatch, Message


class Client:
    """An ASGI receive() that answers http.disconnect once `leave()` is called."""

    def __init__(self) -> None:
        self.listened = 0
        self.listening = asyncio.Event()
        self._left = asyncio.Event()

    async def receive(self) -> Message:
        self.listened += 1
        self.listening.set()
        await self._left.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._left.set()


def test_a_client_that_leaves_cancels_its_request() -> None:
    async def test() -> None:
        watch, client, cancelled = GoneWatch(), Client(), asyncio.Event()

        async def queued() -> None:
            try:
                await asyncio.Event().wait()  # a request waiting for its batch
            except asyncio.CancelledError:
                cancelled.set()
                raise

        request = asyncio.ensure_future(watch.run(client.receive, queued()))
        await asyncio.wait_for(client.listening.wait(), timeout=10)  # after LISTEN_AFTER_S
        client.leave()
        with pytest.raises(ClientGone):
            await asyncio.wait_for(request, timeout=10)
        assert cancelled.is_set()
        # The task is usable again: the swallowed cancellation was taken back.
        assert asyncio.current_task() is not None

    asyncio.run(test())


def test_fast_answers_never_listen_and_other_cancels_pass_through() -> None:
    async def test() -> None:
        watch, client = GoneWatch(), Client()

        async def answer() -> int:
            return 7

        assert [await watch.run(client.receive, answer()) for _ in range(100)] == [7] * 100
        stuck = asyncio.ensure_future(watch.run(client.receive, asyncio.Event().wait()))
        await asyncio.sleep(0)
        stuck.cancel()  # server shutdown, not the client: CancelledError as usual
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert client.listened == 0

    asyncio.run(test())
