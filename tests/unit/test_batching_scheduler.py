"""The shared scheduler: dispatch when idle vs TF's timing, bounded queues, fairness across
models, length buckets, shutdown, and the loader that composes batching around a servable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from servoir.batching.options import BatchingConfig, BatchingOptions
from servoir.batching.queue import QUEUE_FULL, Batch, BatchQueue
from servoir.batching.scheduler import BatchScheduler
from servoir.batching.servable import Batching, BatchingServable, MetricsMeter
from servoir.core.servable import Servable
from servoir.errors import Code, ServingError
from servoir.metrics import Metrics
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import _share_cores
from tests.unit.batching_fakes import FakeServable, batching, call, row, turns


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_a_lone_request_does_not_wait_for_the_timeout_when_a_thread_is_idle() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1), batch_timeout_micros=60_000_000)
        # A minute-long timeout: only dispatch-when-idle can answer within the test.
        result = await asyncio.wait_for(call(servable, row(1)), timeout=10)
        assert result["y"].tolist() == [[2, 2]]

    run(test)


def test_a_lone_request_runs_in_its_caller_and_a_burst_is_batched() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler)
        assert (await call(servable, row(1)))["y"].tolist() == [[2, 2]]
        assert (await call(servable, row(2)))["y"].tolist() == [[4, 4]]
        # Ten requests arriving in the same loop turn on a quiet server: the first finds the
        # thread idle and runs at once, the other nine wait for it and run as one batch.
        burst = await asyncio.gather(*(call(servable, row(i)) for i in range(10)))
        assert [r["y"][0, 0] for r in burst] == [2.0 * i for i in range(10)]
        assert [len(b) for b in fake.batches] == [1, 1, 1, 9]
        assert scheduler.stats().batches_run == 4 and scheduler.stats().running_batches == 0

    run(test)


def test_free_threads_share_the_waiting_rows() -> None:
    async def test() -> None:
        busy, fake = FakeServable("busy"), FakeServable()
        scheduler = BatchScheduler(3)
        busy_model = batching(busy, scheduler)
        servable = batching(fake, scheduler, max_batch_size=16)
        await call(servable, row(0))  # starts the threads, which then wait, idle
        fake.batches.clear()
        busy.hold()
        held = asyncio.create_task(call(busy_model, row(0)))
        await busy.running.wait()  # a loaded server: one thread busy, two free
        fake.hold()
        burst = [asyncio.create_task(call(servable, row(i))) for i in range(10)]
        await turns()
        # The first of the burst did not take a thread alone, and the two free threads
        # took half each, running side by side.
        assert sorted(len(b) for b in fake.batches) == [5, 5]
        assert scheduler.stats().running_batches == 3
        fake.gate.set()
        assert [(await t)["y"][0, 0] for t in burst] == [2.0 * i for i in range(10)]
        busy.gate.set()
        await held

    run(test)


def test_a_model_that_runs_on_the_loop_takes_whole_batches() -> None:
    async def test() -> None:
        busy, fake = FakeServable("busy"), FakeServable()
        fake.runs_on_loop = True
        scheduler = BatchScheduler(3)
        busy_model = batching(busy, scheduler)
        servable = batching(fake, scheduler, max_batch_size=16)
        await call(servable, row(0))  # starts the threads
        fake.batches.clear()
        busy.hold()
        held = asyncio.create_task(call(busy_model, row(0)))
        await busy.running.wait()  # one thread busy, two free, as in the sharing test
        burst = [asyncio.create_task(call(servable, row(i))) for i in range(10)]
        # Its batches would run one after another on the loop: shares would only add
        # batches, so one thread takes everything waiting.
        assert [(await t)["y"][0, 0] for t in burst] == [2.0 * i for i in range(10)]
        assert [len(b) for b in fake.batches] == [10]
        busy.gate.set()
        await held

    run(test)


@pytest.mark.parametrize(("allowed", "shares"), [((), [5, 5]), ((4, 8, 16), [2, 8]), ((16,), [10])])
def test_shares_are_rounded_up_to_allowed_batch_sizes(
    allowed: tuple[int, ...], shares: list[int]
) -> None:
    async def test() -> None:
        busy, fake = FakeServable("busy"), FakeServable()
        scheduler = BatchScheduler(3)
        servable = batching(fake, scheduler, max_batch_size=16, allowed_batch_sizes=allowed)
        await call(servable, row(0))  # starts the threads
        busy.hold()
        held = asyncio.create_task(call(batching(busy, scheduler), row(0)))
        await busy.running.wait()  # a loaded server: one thread busy, two free
        fake.hold()
        fake.batches.clear()
        burst = [asyncio.create_task(call(servable, row(i))) for i in range(10)]
        await turns()
        # Real rows per batch (padding rows are copies of the last part's row 0).
        assert sorted(int((b[:, 0] != b[-1, 0]).sum()) + 1 for b in fake.batches) == shares
        fake.gate.set()
        busy.gate.set()
        assert [(await t)["y"][0, 0] for t in burst] == [2.0 * i for i in range(10)]
        await held

    run(test)


def test_free_threads_go_to_different_models_before_sharing_one() -> None:
    async def test() -> None:
        a, b, busy = FakeServable("a"), FakeServable("b"), FakeServable("busy")
        scheduler = BatchScheduler(3)
        model_a, model_b = batching(a, scheduler), batching(b, scheduler)
        await asyncio.gather(call(model_a, row(0)), call(model_b, row(0)))  # threads idle
        busy.hold()
        held = asyncio.create_task(call(batching(busy, scheduler), row(0)))
        await busy.running.wait()  # one thread busy, two free
        for fake in (a, b):
            fake.hold()
            fake.batches.clear()
        burst = [asyncio.create_task(call(m, row(i))) for i in range(4) for m in (model_a, model_b)]
        await turns()
        # One thread per model, each taking its model's whole batch (not half of one).
        assert [len(x) for x in a.batches] == [4] and [len(x) for x in b.batches] == [4]
        for fake in (a, b, busy):
            fake.gate.set()
        await asyncio.gather(held, *burst)

    run(test)


def test_tf_timing_takes_whole_batches_even_with_threads_free() -> None:
    async def test() -> None:
        fake = FakeServable()
        fake.hold()
        scheduler = BatchScheduler(2, when_idle=False)
        servable = batching(fake, scheduler, max_batch_size=4, batch_timeout_micros=60_000_000)
        burst = [asyncio.create_task(call(servable, row(i))) for i in range(4)]
        await turns()
        assert [len(b) for b in fake.batches] == [4]  # full, so ready; taken whole
        fake.gate.set()
        await asyncio.gather(*burst)

    run(test)


def test_tf_timing_waits_until_the_batch_is_full() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1, when_idle=False)
        servable = batching(fake, scheduler, max_batch_size=2, batch_timeout_micros=60_000_000)
        first = asyncio.create_task(call(servable, row(1)))
        await turns(20)
        assert not first.done() and fake.batches == []  # waiting for the timeout or a peer
        second = asyncio.create_task(call(servable, row(2)))
        assert (await first)["y"].tolist() == [[2, 2]]
        assert (await second)["y"].tolist() == [[4, 4]]
        assert [len(b) for b in fake.batches] == [2]

    run(test)


def test_tf_timing_runs_a_partial_batch_at_its_timeout() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(fake, BatchScheduler(1, when_idle=False), batch_timeout_micros=2000)
        result = await asyncio.wait_for(call(servable, row(1)), timeout=10)
        assert result["y"].tolist() == [[2, 2]]

    run(test)


def test_a_full_queue_answers_unavailable_at_once_for_exactly_the_overflow() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler, max_batch_size=1, max_enqueued_batches=3)
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        tasks = [asyncio.create_task(call(servable, row(i))) for i in range(1, 6)]
        await turns()
        refused = [t for t in tasks if t.done()]
        assert len(refused) == 2  # 5 sent, 3 queued (max_enqueued_batches x 1 row)
        for task in refused:
            error = task.exception()
            assert isinstance(error, ServingError)
            assert (error.code, error.message) == (Code.UNAVAILABLE, QUEUE_FULL)
        assert scheduler.stats().queued_tasks == 3
        fake.gate.set()
        await first
        admitted = [t for t in tasks if t not in refused]
        values = [(await t)["y"][0, 0] for t in admitted]
        assert values == [2.0, 4.0, 6.0]  # the first three, in arrival order

    run(test)


def test_answered_requests_give_their_queue_places_back() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler, max_batch_size=1, max_enqueued_batches=2)
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        gone = [asyncio.create_task(call(servable, row(i))) for i in (1, 2)]
        await turns()
        for task in gone:  # their callers went away (deadline answered, client cancelled)
            task.cancel()
        await turns()
        # The queue is full of abandoned rows only: a new request takes their place.
        late = asyncio.create_task(call(servable, row(3)))
        await turns()
        assert not late.done()
        assert scheduler.stats().queued_tasks == 1
        fake.gate.set()
        await first
        assert (await late)["y"][0, 0] == 6.0
        assert [b[0, 0] for b in fake.batches] == [0.0, 3.0]  # the abandoned never ran

    run(test)


def test_a_caller_cancelled_while_borrowing_a_thread_gives_it_back() -> None:
    async def test() -> None:
        scheduler = BatchScheduler(2)

        async def runner(batch: Batch) -> None:
            return None

        scheduler.add_queue(BatchQueue("q", BatchingOptions(), runner))  # starts the workers
        await turns()
        assert await scheduler.lend()  # one thread busy: the next lend waits out the turn
        await turns(1)
        waiting = asyncio.create_task(scheduler.lend())
        await asyncio.sleep(0)
        waiting.cancel()  # e.g. a gRPC deadline, at exactly that moment
        with pytest.raises(asyncio.CancelledError):
            await waiting
        scheduler.give_back()
        await turns()
        assert scheduler.stats().running_batches == 0
        # Both threads are there: two lends succeed together.
        assert await scheduler.lend()
        await turns(1)
        assert await scheduler.lend()

    run(test)


def test_a_busy_model_cannot_starve_a_quiet_one() -> None:
    async def test() -> None:
        log: list[str] = []
        busy, quiet = FakeServable("busy", log), FakeServable("quiet", log)
        scheduler = BatchScheduler(1)
        busy_model = batching(busy, scheduler, max_batch_size=1, max_enqueued_batches=100)
        quiet_model = batching(quiet, scheduler, max_batch_size=1)
        busy.hold()
        first = asyncio.create_task(call(busy_model, row(0)))
        await busy.running.wait()
        flood = [asyncio.create_task(call(busy_model, row(i))) for i in range(8)]
        await turns()
        lone = asyncio.create_task(call(quiet_model, row(1)))
        await turns()
        busy.gate.set()
        await asyncio.gather(first, lone, *flood)
        # The busy queue had its turn when the quiet one arrived, so one more busy batch
        # runs first (round-robin from the cursor); then the quiet queue, not after all 8.
        assert log == ["busy", "busy", "quiet"] + ["busy"] * 7

    run(test)


def test_length_buckets_batch_similar_lengths_together() -> None:
    async def test() -> None:
        fake = FakeServable()
        servable = batching(
            fake, BatchScheduler(1), pad_variable_length_inputs=True, length_buckets=(4, 16)
        )
        fake.hold()
        first = asyncio.create_task(call(servable, row(0, width=1)))
        await fake.running.wait()
        widths = [3, 12, 2, 16, 4, 9]
        tasks = [asyncio.create_task(call(servable, row(w, width=w))) for w in widths]
        await turns()
        fake.gate.set()
        await first
        for w, task in zip(widths, tasks, strict=True):
            assert (await task)["total"].tolist() == [w * w]
        shapes = sorted(b.shape for b in fake.batches[1:])
        assert shapes == [(3, 4), (3, 16)]  # short ones padded to 4, not to 16

    run(test)


def test_stop_fails_queued_requests_and_refuses_new_ones() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler)
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        queued = asyncio.create_task(call(servable, row(1)))
        await turns()
        stopping = asyncio.create_task(scheduler.stop())
        with pytest.raises(ServingError) as caught:
            await queued
        assert caught.value.code is Code.UNAVAILABLE
        fake.gate.set()
        await stopping
        assert (await first)["y"].tolist() == [[0, 0]]  # the running batch finished
        with pytest.raises(ServingError, match="shutting down"):
            await call(servable, row(2))

    run(test)


def test_close_removes_the_queues_and_closes_the_servable() -> None:
    async def test() -> None:
        fake = FakeServable()
        scheduler = BatchScheduler(1)
        servable = batching(fake, scheduler)
        await call(servable, row(1))
        assert scheduler.stats().queues == 1
        await asyncio.to_thread(servable.close)  # unload closes in the load executor
        await turns()
        assert scheduler.stats().queues == 0 and fake.closed

    run(test)


# ---- the loader -----------------------------------------------------------------------


class Loader:
    def __init__(self, servable: Any) -> None:
        self.servable = servable
        self.loads = 0

    def load(self) -> Servable:
        self.loads += 1
        return self.servable  # type: ignore[no-any-return]


class Unbatchable:
    batchable = False


def test_the_loader_wraps_only_batchable_servables(tmp_path: Path) -> None:
    wrap = Batching(BatchScheduler(1), BatchingConfig()).wrap
    fake = FakeServable()
    assert isinstance(wrap(Loader(fake), "m", 1, tmp_path, "onnx").load(), BatchingServable)
    plain = Unbatchable()
    assert wrap(Loader(plain), "m", 1, tmp_path, "onnx").load() is plain
    no_attribute = object()  # servables opt in: without the attribute, no batching
    assert wrap(Loader(no_attribute), "m", 1, tmp_path, "onnx").load() is no_attribute


def test_per_model_parameters_come_from_the_version_directory(tmp_path: Path) -> None:
    batching_ = Batching(
        BatchScheduler(1), BatchingConfig(BatchingOptions(max_batch_size=8), per_model=True)
    )
    fake = FakeServable()
    # no file: unbatched
    assert batching_.wrap(Loader(fake), "m", 1, tmp_path, "onnx").load() is fake
    (tmp_path / "batching_params.pbtxt").write_text("max_batch_size { value: 3 }")
    wrapped = batching_.wrap(Loader(fake), "m", 1, tmp_path, "onnx").load()
    assert isinstance(wrapped, BatchingServable) and wrapped.options.max_batch_size == 3


def test_a_platform_entry_decides_its_runtimes_batching(tmp_path: Path) -> None:
    # --platform_config_file: tensorflow batches by its entry, pytorch's entry has no
    # batching_parameters, onnx has no entry and keeps the flags' settings.
    config = BatchingConfig(
        BatchingOptions(max_batch_size=8),
        platforms={"tensorflow": BatchingOptions(max_batch_size=4), "pytorch": None},
    )
    fake = FakeServable()

    def loaded(config: BatchingConfig, platform: str) -> object:
        return (
            Batching(BatchScheduler(1), config)
            .wrap(Loader(fake), "m", 1, tmp_path, platform)
            .load()
        )

    tensorflow, onnx = loaded(config, "tensorflow"), loaded(config, "onnx")
    assert isinstance(tensorflow, BatchingServable) and tensorflow.options.max_batch_size == 4
    assert isinstance(onnx, BatchingServable) and onnx.options.max_batch_size == 8
    assert loaded(config, "pytorch") is fake
    # --enable_batching off: only runtimes with batching in their entry batch
    assert loaded(replace(config, flags_enabled=False), "onnx") is fake


def test_a_platform_entry_can_take_per_model_files(tmp_path: Path) -> None:
    # enable_per_model_batching_params in the tensorflow entry: the version's own file, and
    # no batching without one (as with --enable_per_model_batching_parameters).
    config = BatchingConfig(
        platforms={"tensorflow": BatchingOptions(max_batch_size=8)},
        per_model_platforms=frozenset({"tensorflow"}),
        flags_enabled=False,
    )
    batching_ = Batching(BatchScheduler(1), config)
    fake = FakeServable()
    assert batching_.wrap(Loader(fake), "m", 1, tmp_path, "tensorflow").load() is fake
    (tmp_path / "batching_params.pbtxt").write_text("max_batch_size { value: 3 }")
    wrapped = batching_.wrap(Loader(fake), "m", 1, tmp_path, "tensorflow").load()
    assert isinstance(wrapped, BatchingServable) and wrapped.options.max_batch_size == 3


def test_only_runtimes_that_batch_get_a_share_of_the_cores() -> None:
    # batch threads x intra-op threads <= cores, for the runtimes that batch; the others
    # keep "one thread per core" (0).
    runtime = RuntimeOptions(onnx_intra_op_threads=0, torch_intra_op_threads=0)
    only_tf = BatchingConfig(
        platforms={"tensorflow": BatchingOptions(), "onnx": None}, flags_enabled=False
    )
    shared = _share_cores(runtime, 2, only_tf)
    assert shared.tensorflow_intra_op_threads == 2
    assert (shared.onnx_intra_op_threads, shared.torch_intra_op_threads) == (0, 0)
    everything = _share_cores(runtime, 2, BatchingConfig())
    assert (everything.onnx_intra_op_threads, everything.torch_intra_op_threads) == (2, 2)
    set_by_hand = _share_cores(replace(runtime, onnx_intra_op_threads=3), 2, BatchingConfig())
    assert set_by_hand.onnx_intra_op_threads == 3


def test_the_scheduler_has_threads_for_the_largest_setting() -> None:
    config = BatchingConfig(
        BatchingOptions(num_batch_threads=2),
        platforms={"tensorflow": BatchingOptions(num_batch_threads=3), "onnx": None},
    )
    assert config.threads == 3
    assert replace(config, platforms={"tensorflow": None}).threads == 2
    lone = replace(
        config, flags_enabled=False, platforms={"tensorflow": BatchingOptions(num_batch_threads=1)}
    )
    assert lone.threads == 1


def test_a_bad_per_model_file_fails_the_load_before_loading(tmp_path: Path) -> None:
    batching_ = Batching(BatchScheduler(1), BatchingConfig(per_model=True))
    (tmp_path / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 8 } allowed_batch_sizes: 4"
    )
    loader = Loader(FakeServable())
    with pytest.raises(ServingError) as caught:
        batching_.wrap(loader, "m", 1, tmp_path, "onnx").load()
    assert caught.value.message == (
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8"
    )
    assert loader.loads == 0
    assert str(tmp_path) not in caught.value.message


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BatchScheduler(0)


def test_batches_are_reported_to_the_servers_metrics() -> None:
    async def test() -> None:
        metrics = Metrics()
        fake = FakeServable()
        servable = BatchingServable(
            fake,
            BatchScheduler(1),
            "m/1",
            BatchingOptions(max_batch_size=4, allowed_batch_sizes=(2, 4)),
            meter=MetricsMeter(metrics, "m"),
        )
        fake.hold()
        first = asyncio.create_task(call(servable, row(0)))
        await fake.running.wait()
        queued = [asyncio.create_task(call(servable, row(i))) for i in range(3)]
        await turns()
        sample = metrics.registry.get_sample_value
        assert sample("servoir_batch_queue_depth", {"model": "m"}) == 3
        fake.gate.set()
        await asyncio.gather(first, *queued)
        assert sample("servoir_batch_queue_depth", {"model": "m"}) == 0
        assert sample("servoir_batch_size_count", {"model": "m"}) == 2
        assert sample("servoir_batch_size_sum", {"model": "m"}) == 4  # real rows: 1 + 3
        assert sample("servoir_batch_padding_rows_sum", {"model": "m"}) == 2  # 1->2, 3->4
        assert sample("servoir_batch_queue_wait_seconds_count", {"model": "m"}) == 4
        # TF Serving's batching_session metrics, under TF's names and labels.
        tf = metrics.tf_registry.get_sample_value
        prefix = ":tensorflow:serving:batching_session:"
        assert tf(prefix + "wrapped_run_count_total", {}) == 2
        assert tf(prefix + "input_batch_size_count", {}) == 4  # one input tensor each
        assert tf(prefix + "processed_batch_size_sum", {}) == 6  # padded sizes 2 + 4
        for execution_size in ("2", "4"):
            labels = {"execution_batch_size": execution_size}
            assert tf(prefix + "padding_size_count", labels) == 1
            assert tf(prefix + "padding_size_sum", labels) == 1
        assert tf(prefix + "queuing_latency_count", {"thread_pool_name": ""}) == 4

    run(test)
