"""One bounded batching queue (a model version + signature): requests in, batches out.

A request becomes one or more parts (more when large batch splitting cuts it); parts join
the open batch of their bucket, and the queue never holds more than max_enqueued_batches
waiting batches: past that, a request is refused at once with UNAVAILABLE.

With `nearest` (--batching_length_buckets=nearest) batches are chosen when they are taken
instead: the batch to run holds the oldest waiting part and, up to the batch limit, the
waiting parts closest to it in sequence length while padding stays under
NEAREST_MAX_PADDING of its tokens; the rest are packed again in arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from servoir.batching.formation import (
    bucket_key,
    join_pieces,
    sequence_length,
    split_sizes,
    trailing_shapes,
)
from servoir.batching.options import BatchingOptions
from servoir.errors import Code, ServingError
from servoir.types import Array

if TYPE_CHECKING:
    Outputs = asyncio.Future[dict[str, Array]]

# Under `nearest`, a batch takes another request only while padding stays at most this
# share of its tokens: on a CPU a padded token costs about what a real one does, while
# batching saves 5-40% per token (MiniLM, long to short sequences), and the request left
# out runs in a later batch of lengths like its own. (0.05-0.15 measured alike; 0.3 and
# no limit lost 10-15% of the throughput on mixed 16-128-token requests.)
NEAREST_MAX_PADDING = 0.15
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class Meter(Protocol):
    """Where a queue reports what it does (the server adapts its metrics registry)."""

    def received(self, rows: int, tensors: int) -> None:
        """A request of `rows` rows in each of its `tensors` input tensors arrived."""
        ...

    def queued(self, delta: int) -> None:
        """Parts waiting in the queue went up (or down) by `delta`."""
        ...

    def ran(self, rows: int, padding: int, waits: Sequence[float]) -> None:
        """A batch ran: its rows (padding included), padding rows, and how long each of
        its parts waited in the queue."""
        ...


class Request:
    """One caller's run(): where its answer goes, and its parts' results so far."""

    __slots__ = ("deadline", "enqueued", "future", "outputs", "remaining", "results")

    def __init__(
        self, future: Outputs, outputs: tuple[str, ...], deadline: float | None, parts: int
    ) -> None:
        self.future = future
        self.outputs = outputs
        self.deadline = deadline
        self.results: list[dict[str, Array] | None] = [None] * parts
        self.remaining = parts
        self.enqueued = 0.0  # set by the queue that admits it

    @property
    def done(self) -> bool:
        """Answered, failed, expired or abandoned by its caller: its parts are not run."""
        return self.future.done()

    def deliver(self, index: int, values: Mapping[str, Array]) -> None:
        """Part `index`'s outputs (parts may finish out of order on several threads)."""
        if self.future.done():
            return
        self.results[index] = {name: values[name] for name in self.outputs}
        self.remaining -= 1
        if self.remaining == 0:
            results = [r for r in self.results if r is not None]
            if len(results) == 1:
                self.future.set_result(results[0])
                return
            try:
                self.future.set_result(join_pieces(results))
            except ServingError as e:
                self.future.set_exception(e)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Part:
    """Rows of one request that travel in one batch."""

    __slots__ = ("index", "inputs", "request", "size")

    def __init__(
        self, request: Request, index: int, inputs: Mapping[str, Array], size: int
    ) -> None:
        self.request = request
        self.index = index  # which piece of the request, for reassembly
        self.inputs = inputs
        self.size = size


class Batch:
    __slots__ = ("closed", "key", "opened", "parts", "size")

    def __init__(self, key: Hashable, opened: float) -> None:
        self.key = key
        self.opened = opened
        self.parts: list[Part] = []
        self.size = 0
        self.closed = False


class BatchQueue:
    """Formation state of one queue; the scheduler decides when its batches run."""

    def __init__(
        self,
        name: str,
        options: BatchingOptions,
        runner: Callable[[Batch], Awaitable[None]],
        length_buckets: tuple[int, ...] | None = None,
        meter: Meter | None = None,
        nearest: bool = False,
        on_loop: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._nearest = nearest
        # Whether the model's runs execute on the event loop now (measured fast): such
        # batches never run side by side, so sharing one out between threads cannot help.
        self.on_loop = on_loop or _never
        self.options = options
        self.run = runner
        self.limit = options.batch_limit
        self.timeout_s = options.timeout_s
        self._buckets = length_buckets
        self.meter = meter
        self.batches: list[Batch] = []  # waiting, oldest first
        self._open: dict[Hashable, Batch] = {}  # per bucket, the batch taking new parts
        # Counters for stats and tests: rows the model ran (padding included), parts
        # dropped because their deadline passed before their batch ran.
        self.rows_run = 0
        self.expired = 0

    def enqueue(
        self,
        inputs: Mapping[str, Array],
        size: int,
        request: Callable[[int], Request],
        now: float,
    ) -> Request:
        """Admit a request of `size` rows, or raise (having at most dropped the rows of
        requests already answered). `request(parts)` makes the Request once the number of
        parts is known."""
        options = self.options
        if size > options.max_batch_size:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Task size {size} is larger than maximum input batch size "
                f"{options.max_batch_size}",
            )
        key = bucket_key(inputs, self._buckets, options.pad_variable_length_inputs)
        try:
            pieces = self._pieces(key, size)
        except ServingError as e:
            # Rows of requests already answered (deadline passed, caller gone) wait for their
            # batch to drop them; a full queue drops them now to make room instead.
            if e.code is not Code.UNAVAILABLE or not self._drop_answered(now):
                raise
            pieces = self._pieces(key, size)
        admitted = request(len(pieces))
        admitted.enqueued = now
        if self.meter is not None:
            self.meter.queued(len(pieces))
        if len(pieces) == 1:
            self._add(key, Part(admitted, 0, inputs, size), now)
            return admitted
        start = 0
        for index, rows in enumerate(pieces):
            sliced = {name: array[start : start + rows] for name, array in inputs.items()}
            self._add(key, Part(admitted, index, sliced, rows), now)
            start += rows
        return admitted

    def _pieces(self, key: Hashable, size: int) -> list[int]:
        """How a request of `size` rows joins the queue (one piece unless split), or
        UNAVAILABLE when it does not fit."""
        options = self.options
        current = self._open.get(key)
        room = self.limit - current.size if current is not None else 0
        free = options.max_enqueued_batches - len(self.batches)
        if size <= room:
            return [size]
        if options.enable_large_batch_splitting:
            capacity = room + free * self.limit
            if size > capacity:
                raise ServingError(
                    Code.UNAVAILABLE,
                    f"{QUEUE_FULL}; task size is {size} but scheduling capacity is only "
                    f"{capacity} (num_enqueued_batches={len(self.batches)}, "
                    f"max_enqueued_batches={options.max_enqueued_batches}, "
                    f"open_batch_size={current.size if current else 0}, "
                    f"max_execution_batch_size={self.limit})",
                )
            return split_sizes(size, room, self.limit)
        if free <= 0:
            raise ServingError(Code.UNAVAILABLE, QUEUE_FULL)
        return [size]

    def _drop_answered(self, now: float) -> int:
        """Remove the waiting parts of requests already answered; how many went."""
        dropped = 0
        kept = []
        for batch in self.batches:
            live = []
            for part in batch.parts:
                request = part.request
                if not request.done:
                    live.append(part)
                    continue
                dropped += 1
                if request.deadline is not None and request.deadline <= now:
                    self.expired += 1
            if live:
                batch.parts = live
                batch.size = sum(part.size for part in live)
                kept.append(batch)
            elif self._open.get(batch.key) is batch:
                del self._open[batch.key]
        self.batches = kept
        if dropped and self.meter is not None:
            self.meter.queued(-dropped)
        return dropped

    def _add(self, key: Hashable, part: Part, now: float) -> None:
        batch = self._open.get(key)
        if batch is None or batch.size + part.size > self.limit:
            if batch is not None:
                batch.closed = True  # TF closes the open batch when it starts a new one
            batch = Batch(key, now)
            self.batches.append(batch)
            self._open[key] = batch
        batch.parts.append(part)
        batch.size += part.size
        if batch.size >= self.limit:
            batch.closed = True
            del self._open[key]

    def take(self, index: int, max_rows: int | None = None) -> Batch:
        """Remove a batch to run it; new parts of its bucket start a new batch. With
        `max_rows` (work sharing) a larger batch gives up only its first parts up to that
        many rows (always at least one part); the rest stays queued where it was."""
        if self._nearest:
            batch = self._regroup(self.limit if max_rows is None else min(max_rows, self.limit))
        elif max_rows is not None and self.batches[index].size > max_rows:
            batch = _split_front(self.batches[index], max_rows)
        else:
            batch = self.batches.pop(index)
            if self._open.get(batch.key) is batch:
                del self._open[batch.key]
            batch.closed = True
        if self.meter is not None:
            self.meter.queued(-len(batch.parts))
        return batch

    def _regroup(self, limit: int) -> Batch:
        """The batch to run under `nearest`, removed: the queue's oldest part, then the
        waiting parts closest to that part's length (earlier ones first on ties) while they
        fit in `limit` rows and padding stays under NEAREST_MAX_PADDING; the others are
        packed again in arrival order. The oldest part always runs, so no request waits for
        ever. Without padding only parts of the oldest one's exact shapes can join it."""
        anchor = self.batches[0].parts[0]
        pool = [part for batch in self.batches for part in batch.parts]
        pad = self.options.pad_variable_length_inputs
        length = sequence_length(anchor.inputs)
        shapes = trailing_shapes(anchor.inputs)
        chosen = {id(anchor)}
        rows, tokens, longest = anchor.size, anchor.size * length, length
        by_distance = sorted(pool, key=lambda p: abs(sequence_length(p.inputs) - length))
        for part in by_distance:
            if rows >= limit:
                break
            if id(part) in chosen or rows + part.size > limit:
                continue
            if not pad and trailing_shapes(part.inputs) != shapes:
                continue
            n = sequence_length(part.inputs)
            widest = max(longest, n)
            if tokens + part.size * n < (1 - NEAREST_MAX_PADDING) * (rows + part.size) * widest:
                continue  # too much padding: leave it for a batch of lengths like its own
            chosen.add(id(part))
            rows, tokens, longest = rows + part.size, tokens + part.size * n, widest
        first = Batch(None, anchor.request.enqueued)
        first.parts = [part for part in pool if id(part) in chosen]
        first.size = rows
        first.closed = True
        self.batches = []
        self._open = {}
        for part in pool:
            if id(part) not in chosen:
                self._add(None, part, part.request.enqueued)
        return first

    def fail_all(self, error: ServingError) -> None:
        if self.meter is not None:
            self.meter.queued(-self.queued_tasks)
        for batch in self.batches:
            for part in batch.parts:
                part.request.fail(error)
        self.batches.clear()
        self._open.clear()

    @property
    def queued_tasks(self) -> int:
        return sum(len(b.parts) for b in self.batches)


def _never() -> bool:
    return False


def _split_front(batch: Batch, max_rows: int) -> Batch:
    """The first parts of `batch` up to `max_rows` rows (at least one) as a batch of their
    own; `batch` keeps the rest, its age and its place."""
    front = Batch(batch.key, batch.opened)
    while batch.parts and (not front.parts or front.size + batch.parts[0].size <= max_rows):
        part = batch.parts.pop(0)
        front.parts.append(part)
        front.size += part.size
    batch.size -= front.size
    front.closed = True
    return front
