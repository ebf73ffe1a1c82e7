"""BatchingServable over a fake servable: concatenation and splitting back, padding,
large batch splitting, deadlines, cancellation and errors, each caller getting its own rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from servoir.batching.formation import NO_DIMENSIONS, ROWS_DIFFER, SHAPES_DIFFER
from servoir.batching.scheduler import BatchScheduler
from servoir.errors import Code, ServingError
from tests.unit.batching_fakes import FakeServable, batching, call, row, turns


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_concurrent_callers_share_a_batch_and_each_gets_its_own_rows() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1), max_batch_size=64)
        fake.hold()
        first = asyncio.create_task(call(servable, row(-1)))
        await fake.running.wait()  # the only batch thread is busy from now on
        others = [asyncio.create_task(call(servable, row(i))) for i in range(20)]
        await turns()
        fake.gate.set()
        assert (await first)["y"].tolist() == [[-2, -2]]
        for i, task in enumerate(others):
            result = await task
            assert result["y"].tolist() == [[2 * i, 2 * i]]
            assert result["total"].tolist() == [2 * i]
        assert [len(b) for b in fake.batches] == [1, 20]

    run(test)


def test_allowed_batch_sizes_pad_with_row_0_of_the_last_task_and_drop_it() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1), max_batch_size=4, allowed_batch_sizes=(2, 4))
        fake.hold()
        first = asyncio.create_task(call(servable, row(9)))
        await fake.running.wait()
        a = asyncio.create_task(call(servable, row(1)))
        b = asyncio.create_task(call(servable, np.array([[2, 2], [3, 3]], np.float32)))
        await turns()
        fake.gate.set()
        assert (await first)["y"].shape == (1, 2)  # one row, run as a batch of 2
        assert (await a)["y"].tolist() == [[2, 2]]
        assert (await b)["y"].tolist() == [[4, 4], [6, 6]]
        assert fake.batches[0].tolist() == [[9, 9], [9, 9]]
        assert fake.batches[1].tolist() == [[1, 1], [2, 2], [3, 3], [2, 2]]

    run(test)


def test_variable_lengths_are_padded_with_zeros_when_enabled() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1), pad_variable_length_inputs=True)
        fake.hold()
        first = asyncio.create_task(call(servable, row(0, width=1)))
        await fake.running.wait()
        short = asyncio.create_task(call(servable, row(1, width=2)))
        long = asyncio.create_task(call(servable, row(2, width=4)))
        await turns()
        fake.gate.set()
        await first
        # As in TF, outputs keep the batch's padded length.
        assert (await short)["y"].tolist() == [[2, 2, 0, 0]]
        assert (await short)["total"].tolist() == [2]  # zero padding changes no real value
        assert (await long)["y"].tolist() == [[4, 4, 4, 4]]
        assert fake.batches[1].tolist() == [[1, 1, 0, 0], [2, 2, 2, 2]]

    run(test)


def test_without_padding_only_the_request_of_another_shape_fails() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1))
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        good = asyncio.create_task(call(servable, row(1, width=2)))
        odd = asyncio.create_task(call(servable, row(2, width=3)))
        await turns()
        fake.gate.set()
        await first
        assert (await good)["y"].tolist() == [[2, 2]]
        with pytest.raises(ServingError) as caught:
            await odd
        assert caught.value.code is Code.FAILED_PRECONDITION
        assert caught.value.message == SHAPES_DIFFER.format(name="x")

    run(test)


def test_large_requests_are_split_and_reassembled() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(
            fake,
            BatchScheduler(2),
            max_batch_size=8,
            enable_large_batch_splitting=True,
            max_execution_batch_size=2,
        )
        x = np.arange(10, dtype=np.float32).reshape(5, 2)
        result = await call(servable, x)
        assert result["y"].tolist() == (x * 2).tolist()
        assert result["total"].tolist() == x.sum(axis=1).tolist()
        assert sorted(len(b) for b in fake.batches) == [1, 2, 2]

    run(test)


def test_a_deadline_passed_while_queued_is_never_executed() -> None:
    async def test() -> None:
        now = [100.0]  # an injected clock: the test decides when deadlines pass
        scheduler = BatchScheduler(1, clock=lambda: now[0])
        fake = FakeServable()
        servable = batching(fake, scheduler)
        fake.hold()
        first = asyncio.create_task(call(servable, row(1)))
        await fake.running.wait()
        late = asyncio.create_task(call(servable, row(2), deadline=100.5))
        kept = asyncio.create_task(call(servable, row(3), deadline=200.0))
        await turns()
        now[0] = 101.0  # the deadline passes while the batch thread is busy
        fake.gate.set()
        await first
        with pytest.raises(ServingError) as caught:
            await late
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        assert (await kept)["y"].tolist() == [[6, 6]]
        assert [b.tolist() for b in fake.batches] == [[[1, 1]], [[3, 3]]]  # row 2 never ran
        assert fake.deadlines[1] == 200.0
        assert scheduler.stats().expired == 1

    run(test)


def test_a_deadline_answers_504_while_still_queued() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler)
        fake.hold()
        first = asyncio.create_task(call(servable, row(1)))
        await fake.running.wait()
        with pytest.raises(ServingError) as caught:  # the thread stays busy throughout
            await call(servable, row(2), deadline=time.monotonic() + 0.02)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        fake.gate.set()
        await first
        await turns()
        assert len(fake.batches) == 1 and scheduler.stats().expired == 1

    run(test)


def test_a_cancelled_caller_is_not_executed() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1))
        fake.hold()
        first = asyncio.create_task(call(servable, row(1)))
        await fake.running.wait()
        gone = asyncio.create_task(call(servable, row(2)))
        await turns()
        gone.cancel()
        await turns()
        fake.gate.set()
        await first
        await turns()
        assert len(fake.batches) == 1

    run(test)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda x: {"y": np.float32(1), "total": np.float32(1)}, NO_DIMENSIONS),
        (lambda x: {"y": x[:1], "total": x[:1, 0]}, ROWS_DIFFER),
    ],
)
def test_bad_batched_outputs_fail_every_caller(
    answer: Callable[[np.ndarray], dict[str, np.ndarray]], message: str
) -> None:
    async def test() -> None:
        fake = FakeServable(answer=answer)
        servable = batching(fake, BatchScheduler(1))
        results = await asyncio.gather(
            call(servable, row(1)), call(servable, row(2)), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, ServingError)
            assert (result.code, result.message) == (Code.FAILED_PRECONDITION, message)
        assert results[0] is not results[1]  # one exception object per caller

    run(test)


def test_a_runtime_error_reaches_every_caller_of_the_batch() -> None:
    def fail(x: np.ndarray) -> dict[str, np.ndarray]:
        raise ServingError(Code.INVALID_ARGUMENT, "bad input")

    async def test() -> None:
        servable = batching(FakeServable(answer=fail), BatchScheduler(1))
        results = await asyncio.gather(
            call(servable, row(1)), call(servable, row(2)), return_exceptions=True
        )
        assert [(r.code, r.message) for r in results if isinstance(r, ServingError)] == [
            (Code.INVALID_ARGUMENT, "bad input")
        ] * 2

    run(test)


def test_a_batch_failing_on_one_requests_data_fails_only_that_request() -> None:
    def answer(x: np.ndarray) -> dict[str, np.ndarray]:
        if (x < 0).any():  # e.g. TensorFlow: "Could not parse example input, value: ..."
            raise ServingError(Code.INVALID_ARGUMENT, f"bad value {x.min()}")
        return {"y": x * 2, "total": x.sum(axis=1)}

    async def test() -> None:
        fake = FakeServable(answer=answer)
        servable = batching(fake, BatchScheduler(1))
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        queued = [asyncio.create_task(call(servable, row(v))) for v in (1, -5, 3)]
        await turns()
        fake.gate.set()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)
        good, error, other = results
        assert isinstance(good, dict) and isinstance(other, dict)
        assert [good["y"][0, 0], other["y"][0, 0]] == [2.0, 6.0]
        assert isinstance(error, ServingError)
        assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "bad value -5.0")
        # the batch of three failed, then each ran alone
        assert [len(b) for b in fake.batches] == [1, 3, 1, 1, 1]

    run(test)


def test_a_request_of_zero_rows_goes_straight_to_the_model() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        result = await call(batching(fake, scheduler), np.zeros((0, 2), np.float32))
        assert result["y"].shape == (0, 2)
        assert scheduler.stats().queues == 0

    run(test)


def test_a_scalar_input_is_tf_servings_batching_error() -> None:
    async def test() -> None:
        with pytest.raises(ServingError, match="must have at least one dimension"):
            await call(batching(FakeServable(), BatchScheduler(1)), np.float32(3))

    run(test)
