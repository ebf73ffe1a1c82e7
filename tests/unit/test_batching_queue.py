"""One batching queue: admission (UNAVAILABLE for exactly the overflow), size limits,
large batch splitting and length buckets, with an injected time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from servoir.batching.options import BatchingOptions
from servoir.batching.queue import QUEUE_FULL, Batch, BatchQueue, Request
from servoir.errors import Code, ServingError


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def _never(batch: Batch) -> None:
    raise AssertionError("queues do not run batches themselves")


def queue(
    buckets: tuple[int, ...] | None = None, nearest: bool = False, **options: object
) -> BatchQueue:
    opts = BatchingOptions(**options)  # type: ignore[arg-type]
    return BatchQueue("m/1/serving_default", opts, _never, buckets, nearest=nearest)


def request(loop: asyncio.AbstractEventLoop) -> Callable[[int], Request]:
    return lambda parts: Request(loop.create_future(), ("y",), None, parts)


def x(n: int, width: int = 2, start: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)}


def sizes(q: BatchQueue) -> list[int]:
    return [b.size for b in q.batches]


def test_a_full_queue_refuses_exactly_the_overflow(loop: asyncio.AbstractEventLoop) -> None:
    q = queue(max_batch_size=2, max_enqueued_batches=2)
    admitted = [q.enqueue(x(1), 1, request(loop), now=0.0) for _ in range(4)]
    assert sizes(q) == [2, 2] and len(admitted) == 4
    with pytest.raises(ServingError) as caught:
        q.enqueue(x(1), 1, request(loop), now=0.0)
    assert (caught.value.code, caught.value.message) == (Code.UNAVAILABLE, QUEUE_FULL)
    assert caught.value.message == (
        "The batch scheduling queue to which this task was submitted is full"
    )
    assert sizes(q) == [2, 2]  # a refused request leaves nothing behind
    q.take(0)  # a thread took a batch: room for one more
    q.enqueue(x(1), 1, request(loop), now=0.0)
    assert sizes(q) == [2, 1]


def test_a_request_larger_than_max_batch_size_is_invalid(loop: asyncio.AbstractEventLoop) -> None:
    for splitting in (False, True):
        q = queue(max_batch_size=2, enable_large_batch_splitting=splitting)
        with pytest.raises(ServingError) as caught:
            q.enqueue(x(3), 3, request(loop), now=0.0)
        assert caught.value.code is Code.INVALID_ARGUMENT
        assert caught.value.message == "Task size 3 is larger than maximum input batch size 2"


def test_a_request_that_does_not_fit_starts_a_new_batch(loop: asyncio.AbstractEventLoop) -> None:
    q = queue(max_batch_size=4)
    q.enqueue(x(3), 3, request(loop), now=0.0)
    q.enqueue(x(2), 2, request(loop), now=1.0)
    assert sizes(q) == [3, 2]
    assert q.batches[0].closed and not q.batches[1].closed
    assert q.batches[1].opened == 1.0


def test_splitting_fills_the_open_batch_then_whole_batches(
    loop: asyncio.AbstractEventLoop,
) -> None:
    q = queue(
        max_batch_size=8,
        enable_large_batch_splitting=True,
        max_execution_batch_size=2,
        max_enqueued_batches=4,
    )
    q.enqueue(x(1, start=100), 1, request(loop), now=0.0)
    big = q.enqueue(x(4), 4, request(loop), now=0.0)
    assert sizes(q) == [2, 2, 1]
    assert big.remaining == 3
    pieces = [p.inputs["x"][:, 0].tolist() for b in q.batches for p in b.parts if p.request is big]
    assert pieces == [[0.0], [2.0, 4.0], [6.0]]
    assert [p.index for b in q.batches for p in b.parts if p.request is big] == [0, 1, 2]


def test_splitting_refuses_what_exceeds_the_capacity(loop: asyncio.AbstractEventLoop) -> None:
    q = queue(
        max_batch_size=8,
        enable_large_batch_splitting=True,
        max_execution_batch_size=2,
        max_enqueued_batches=3,
    )
    q.enqueue(x(1), 1, request(loop), now=0.0)
    with pytest.raises(ServingError) as caught:
        q.enqueue(x(6), 6, request(loop), now=0.0)
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.message == (
        f"{QUEUE_FULL}; task size is 6 but scheduling capacity is only 5 "
        "(num_enqueued_batches=1, max_enqueued_batches=3, open_batch_size=1, "
        "max_execution_batch_size=2)"
    )
    q.enqueue(x(5), 5, request(loop), now=0.0)
    assert sizes(q) == [2, 2, 2]


def test_length_buckets_keep_lengths_apart(loop: asyncio.AbstractEventLoop) -> None:
    q = queue((16, 64), max_batch_size=8, pad_variable_length_inputs=True)
    for length in (10, 40, 12, 16, 64):
        ids = {"ids": np.zeros((1, length), np.int64)}
        q.enqueue(ids, 1, request(loop), now=0.0)
    lengths = [[p.inputs["ids"].shape[1] for p in b.parts] for b in q.batches]
    assert lengths == [[10, 12, 16], [40, 64]]


def ids(length: int, rows: int = 1) -> dict[str, np.ndarray]:
    return {"ids": np.full((rows, length), length, np.int64)}


def lengths_of(batch: Batch) -> list[int]:
    return [p.inputs["ids"].shape[1] for p in batch.parts]


@pytest.mark.parametrize(
    ("arrivals", "limit", "taken", "left"),
    [
        # the oldest (100) and the two closest to it, in arrival order; the rest repacked
        ([100, 20, 90, 25, 110, 30], 3, [100, 90, 110], [[20, 25, 30]]),
        # the oldest runs first even when every other request is far from it
        ([16, 128, 120, 124, 17], 2, [16, 17], [[128, 120], [124]]),
        # ties go to the earlier arrival
        ([50, 40, 60, 40], 2, [50, 40], [[60, 40]]),
        # fewer waiting than the limit: all of them
        ([64, 60, 62], 4, [64, 60, 62], []),
        # but not one that would make padding more than NEAREST_MAX_PADDING of the tokens
        ([64, 8, 60], 4, [64, 60], [[8]]),
    ],
)
def test_nearest_takes_the_oldest_and_the_closest_lengths(
    loop: asyncio.AbstractEventLoop,
    arrivals: list[int],
    limit: int,
    taken: list[int],
    left: list[list[int]],
) -> None:
    q = queue(nearest=True, max_batch_size=limit, pad_variable_length_inputs=True)
    for at, length in enumerate(arrivals):
        q.enqueue(ids(length), 1, request(loop), now=float(at))
    batch = q.take(0)
    assert lengths_of(batch) == taken and batch.closed and batch.size == len(taken)
    assert [lengths_of(b) for b in q.batches] == left
    # the repacked batches keep their first request's arrival time (for the timeout)
    assert [b.opened for b in q.batches] == [
        float(arrivals.index(b.parts[0].inputs["ids"].shape[1])) for b in q.batches
    ]
    assert q.queued_tasks == len(arrivals) - len(taken)


def test_nearest_counts_rows_and_without_padding_keeps_to_exact_shapes(
    loop: asyncio.AbstractEventLoop,
) -> None:
    q = queue(nearest=True, max_batch_size=4, pad_variable_length_inputs=True)
    for length, rows in ((30, 2), (31, 3), (40, 2), (29, 1)):
        q.enqueue(ids(length, rows), rows, request(loop), now=0.0)
    # 30 (2 rows), then 29 (1 row) and 31 (3 rows, does not fit), then 40 (2, does not fit)
    assert lengths_of(q.take(0)) == [30, 29] and q.queued_tasks == 2
    unpadded = queue(nearest=True, max_batch_size=4)
    for length in (30, 31, 30, 29):
        unpadded.enqueue(ids(length), 1, request(loop), now=0.0)
    assert lengths_of(unpadded.take(0)) == [30, 30]
    assert [lengths_of(b) for b in unpadded.batches] == [[31, 29]]


def test_take_closes_the_batch_and_new_tasks_open_another(
    loop: asyncio.AbstractEventLoop,
) -> None:
    q = queue(max_batch_size=4)
    q.enqueue(x(1), 1, request(loop), now=0.0)
    taken = q.take(0)
    assert taken.closed and q.batches == []
    q.enqueue(x(1), 1, request(loop), now=2.0)
    assert sizes(q) == [1] and q.batches[0] is not taken


@pytest.mark.parametrize(
    ("rows", "max_rows", "taken", "left"),
    [
        ([1, 1, 1, 1, 1], 3, [1, 1, 1], [2]),  # its first parts, up to max_rows
        ([2, 2, 2], 3, [2], [4]),  # whole parts only
        ([4, 1], 3, [4], [1]),  # at least one part, even a larger one
        ([1, 1], 3, [1, 1], []),  # a batch within max_rows is taken whole
    ],
)
def test_a_share_takes_the_first_parts_and_leaves_the_rest_in_place(
    loop: asyncio.AbstractEventLoop,
    rows: list[int],
    max_rows: int,
    taken: list[int],
    left: list[int],
) -> None:
    q = queue(max_batch_size=8)
    for at, n in enumerate(rows):
        q.enqueue(x(n, start=at * 100), n, request(loop), now=float(at))
    batch = q.take(0, max_rows)
    assert [p.size for p in batch.parts] == taken and batch.closed
    assert batch.size == sum(taken) and batch.opened == 0.0
    assert sizes(q) == left and q.queued_tasks == len(rows) - len(taken)
    if left:  # the rest keeps its age and its place, and new tasks still join it
        assert q.batches[0].opened == 0.0
        q.enqueue(x(1), 1, request(loop), now=9.0)
        assert sizes(q) == [left[0] + 1]


def test_nearest_shares_count_rows_too(loop: asyncio.AbstractEventLoop) -> None:
    q = queue(nearest=True, max_batch_size=8, pad_variable_length_inputs=True)
    for length in (30, 31, 29, 30, 90):
        q.enqueue(ids(length), 1, request(loop), now=0.0)
    assert lengths_of(q.take(0, 2)) == [30, 30]
    assert lengths_of(q.take(0, 2)) == [31, 29]
    assert lengths_of(q.take(0)) == [90]


def test_fail_all_answers_every_queued_request(loop: asyncio.AbstractEventLoop) -> None:
    q = queue(max_batch_size=1)
    admitted = [q.enqueue(x(1), 1, request(loop), now=0.0) for _ in range(3)]
    assert q.queued_tasks == 3
    q.fail_all(ServingError(Code.UNAVAILABLE, "going away"))
    assert q.batches == [] and q.queued_tasks == 0
    for r in admitted:
        assert isinstance(r.future.exception(), ServingError)


def test_a_split_request_reassembles_its_parts_in_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    r = Request(loop.create_future(), ("y",), None, parts=3)
    r.deliver(2, {"y": np.array([5.0]), "other": np.array([0.0])})
    r.deliver(0, {"y": np.array([1.0, 2.0])})
    assert not r.done
    r.deliver(1, {"y": np.array([3.0, 4.0])})
    assert r.future.result()["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(r.future.result()) == ["y"]  # only the outputs this caller asked for
