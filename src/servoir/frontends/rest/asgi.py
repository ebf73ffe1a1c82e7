"""Minimal ASGI plumbing: body reading with a size limit, gzip and deflate, responses, and
noticing clients that disconnect mid-request.

Servoir talks ASGI directly instead of through a web framework: on this machine a framework's
routing and request objects cost more than half the throughput for small models
(docs/benchmarks.md). This module is the whole of what a framework would have given us.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
# How long an answer may take before Servoir listens for its client going away (GoneWatch).
LISTEN_AFTER_S = 0.02

T = TypeVar("T")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than the limit of {limit} bytes")


class BadEncoding(Exception):
    pass


class ClientGone(Exception):
    pass


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body; refuses before buffering when Content-Length already says too much."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False) and message["type"] == "http.request":
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return _decode(scope, body, limit)
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return _decode(scope, b"".join(chunks), limit)


def _decode(scope: Scope, body: bytes, limit: int) -> bytes:
    encoding = header(scope, b"content-encoding")
    name = b"" if encoding is None else encoding.strip().lower()
    if name in (b"", b"identity"):
        return body
    if name == b"gzip":
        return _inflate(body, limit, 16 + zlib.MAX_WBITS, "gzip")
    if name == b"deflate":  # tritonclient's other request compression: zlib's format
        try:
            return _inflate(body, limit, zlib.MAX_WBITS, "deflate")
        except BadEncoding:  # some clients send deflate's raw stream without zlib's header
            return _inflate(body, limit, -zlib.MAX_WBITS, "deflate")
    assert encoding is not None
    raise BadEncoding(f"Unsupported Content-Encoding: {encoding.decode('latin-1')}")


def _inflate(body: bytes, limit: int, wbits: int, name: str) -> bytes:
    # Bounded inflate: a small compression bomb must not become a huge buffer.
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise BadEncoding(f"Request body is not valid {name} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    return out


class GoneWatch:
    """Notices clients that disconnect while their answer is being computed.

    The HTTP server does not cancel a request whose connection closed, so without this a
    queued request of a client that gave up would still run. A request that has run for
    LISTEN_AFTER_S to 2 x LISTEN_AFTER_S starts listening for http.disconnect; when it comes,
    the request's task is cancelled, which drops it from its batch (as a cancelled gRPC call
    is dropped). One timer serves every request while any runs: a request itself pays only
    two dict operations, and the listening task only if it runs that long.
    """

    def __init__(self) -> None:
        self._young: dict[asyncio.Task[Any], Receive] = {}  # arrived since the last sweep
        self._old: dict[asyncio.Task[Any], Receive] = {}  # seen by a sweep: listen next time
        self._listening: dict[asyncio.Task[Any], asyncio.Future[Message]] = {}
        self._gone: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, receive: Receive, work: Awaitable[T]) -> T:
        """`work`'s result; ClientGone if the client disconnects first."""
        task = asyncio.current_task()
        assert task is not None
        self._young[task] = receive
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LISTEN_AFTER_S, self._sweep)
        try:
            return await work
        except asyncio.CancelledError:
            if task not in self._gone:
                raise
            task.uncancel()
            raise ClientGone() from None
        finally:
            if self._young.pop(task, None) is None:
                self._old.pop(task, None)
            listener = self._listening.pop(task, None)
            if listener is not None:
                listener.cancel()
            self._gone.discard(task)

    def _sweep(self) -> None:
        self._timer = None
        for task, receive in self._old.items():
            listener = asyncio.ensure_future(receive())
            listener.add_done_callback(functools.partial(self._heard, task))
            self._listening[task] = listener
        self._old, self._young = self._young, {}
        if self._old:
            self._timer = asyncio.get_running_loop().call_later(LISTEN_AFTER_S, self._sweep)

    def _heard(self, task: asyncio.Task[Any], listener: asyncio.Future[Message]) -> None:
        if listener.cancelled() or listener.exception() is not None:
            return
        if listener.result()["type"] == "http.disconnect" and task in self._listening:
            self._gone.add(task)
            task.cancel()


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = JSON_HEADERS,
) -> None:
    # With a length the server writes the body as it is; without one it frames the answer as
    # chunked transfer encoding (more bytes, more work on both sides).
    sized = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": sized})
    await send({"type": "http.response.body", "body": body})
