"""Batching by composition: a loader wrapper whose servable queues each run() into the
shared scheduler and runs whole batches through the wrapped servable's own run().

A runtime opts in per servable with an attribute `batchable: bool` (True when every input
and output has a variable dim 0 that requests may be concatenated along; ONNX models with a
dynamic batch dim set it). Servables without it, or with False, are served unbatched. An
optional `runs_on_loop: bool` says the servable's runs execute on the event loop (measured
fast), so its batches cannot run side by side and are never shared out between threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from servoir.batching.formation import merge, padded_size, split_outputs, task_size
from servoir.batching.options import (
    PER_MODEL_FILE,
    BatchingConfig,
    BatchingOptions,
    read_parameters,
)
from servoir.batching.queue import Batch, BatchQueue, Meter, Part, Request
from servoir.batching.scheduler import BatchScheduler
from servoir.core.servable import Loader, Servable
from servoir.errors import Code, ServingError
from servoir.metrics import Metrics
from servoir.types import Array, Signature

log = logging.getLogger("servoir.batching")


# Errors a model gives for what a request holds: a batch failing with one is run again one
# request at a time.
_REQUEST_ERRORS = frozenset({Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE})


def _expire(request: Request, message: str = "Deadline exceeded") -> None:
    request.fail(ServingError(Code.DEADLINE_EXCEEDED, message))


class BatchingServable:
    """Looks like the wrapped servable; run() goes through a batching queue."""

    batchable = False  # batching twice would only add latency

    def __init__(
        self,
        inner: Servable,
        scheduler: BatchScheduler,
        name: str,
        options: BatchingOptions,
        length_buckets: tuple[int, ...] | None = None,
        meter: Meter | None = None,
        nearest_length: bool = False,
    ) -> None:
        self._inner = inner
        self._nearest = nearest_length
        self._meter = meter
        self._scheduler = scheduler
        self._name = name
        self._options = options
        self._buckets = length_buckets
        # One queue per signature and input set (TF keys its queues by the tensors fed).
        self._queues: dict[tuple[str, tuple[str, ...]], BatchQueue] = {}

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._inner.signatures

    @property
    def platform(self) -> str:
        return self._inner.platform

    @property
    def checks_shapes(self) -> bool:
        return self._inner.checks_shapes

    @property
    def options(self) -> BatchingOptions:
        return self._options

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        size = task_size(inputs)
        if self._meter is not None:
            self._meter.received(size, len(inputs))
        if size == 0:  # nothing to batch; the runtime answers empty outputs itself
            return await self._inner.run(signature_name, inputs, output_aliases, deadline)
        queue = self._queue(signature_name, inputs)
        if self._fits_alone(size) and await self._scheduler.lend():
            try:
                return await self._run_alone(
                    queue, signature_name, inputs, output_aliases, deadline, size
                )
            finally:
                self._scheduler.give_back()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Array]] = loop.create_future()
        outputs = tuple(output_aliases)
        request = self._scheduler.enqueue(
            queue, inputs, size, lambda parts: Request(future, outputs, deadline, parts)
        )
        if deadline is None:
            return await future
        # Answer 504 when the deadline passes, even while still queued; a batch that starts
        # later drops the request (request.done) instead of running it late.
        timer = loop.call_later(deadline - self._scheduler.clock(), _expire, request)
        try:
            return await future
        finally:
            timer.cancel()

    def _on_loop(self) -> bool:
        return bool(getattr(self._inner, "runs_on_loop", False))

    def _fits_alone(self, size: int) -> bool:
        """A batch of this one request would be run as it is (no split, no padding)."""
        options = self._options
        return size <= min(options.max_batch_size, options.batch_limit) and (
            padded_size(size, options.allowed_batch_sizes) == size
        )

    async def _run_alone(
        self,
        queue: BatchQueue,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
        size: int,
    ) -> dict[str, Array]:
        """A batch of one, without the trip through the queue and a worker."""
        queue.rows_run += size
        if self._meter is not None:
            self._meter.ran(size, 0, (0.0,))
        values = await self._inner.run(signature_name, inputs, output_aliases, deadline)
        return split_outputs(values, [size], size)[0]  # TF's output checks, as for a batch

    def _queue(self, signature_name: str, inputs: Mapping[str, Array]) -> BatchQueue:
        key = (signature_name, tuple(sorted(inputs)))
        queue = self._queues.get(key)
        if queue is not None:
            return queue
        created: BatchQueue

        async def runner(batch: Batch) -> None:
            await self._run_batch(created, signature_name, batch)

        created = BatchQueue(
            f"{self._name}/{signature_name}",
            self._options,
            runner,
            self._buckets,
            self._meter,
            self._nearest,
            self._on_loop,
        )
        self._queues[key] = created
        self._scheduler.add_queue(created)
        return created

    async def _run_batch(self, queue: BatchQueue, signature_name: str, batch: Batch) -> None:
        live, expired = self._live_parts(batch.parts)
        queue.expired += expired
        if live:
            await self._run_parts(queue, signature_name, live, isolate=True)

    async def _run_parts(
        self, queue: BatchQueue, signature_name: str, live: list[Part], isolate: bool
    ) -> None:
        merged = merge(
            [p.inputs for p in live],
            [p.size for p in live],
            pad=self._options.pad_variable_length_inputs,
            allowed=self._options.allowed_batch_sizes,
        )
        for index, error in merged.rejected.items():
            live[index].request.fail(error)
        kept = [live[i] for i in merged.kept]
        queue.rows_run += merged.rows
        if self._meter is not None:
            now = self._scheduler.clock()
            padding = merged.rows - sum(p.size for p in kept)
            self._meter.ran(merged.rows, padding, [now - p.request.enqueued for p in kept])
        outputs = tuple(dict.fromkeys(a for p in kept for a in p.request.outputs))
        deadlines = [p.request.deadline for p in kept]
        # The latest deadline bounds the batch (as in TF): no member is cut short by another's.
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            values = await self._inner.run(signature_name, merged.inputs, outputs, deadline)
            pieces = split_outputs(values, [p.size for p in kept], merged.rows)
        except ServingError as e:
            if isolate and len(kept) > 1 and e.code in _REQUEST_ERRORS:
                # One request's bad data fails a whole batch (in TF Serving too), and every
                # caller would read that request's error, data included: run each alone, so
                # that only the request at fault fails.
                for part in kept:
                    await self._run_parts(queue, signature_name, [part], isolate=False)
                return
            for part in kept:  # one exception object per caller: tracebacks stay apart
                part.request.fail(ServingError(e.code, e.message))
            return
        except Exception:
            log.exception("model %s failed on a batch", self._name)
            for part in kept:
                part.request.fail(ServingError(Code.INTERNAL, "model execution failed"))
            return
        for part, piece in zip(kept, pieces, strict=True):
            part.request.deliver(part.index, piece)

    def _live_parts(self, parts: Sequence[Part]) -> tuple[list[Part], int]:
        """The parts to run, and how many were dropped for their deadline. Parts whose
        caller is gone or already answered are dropped; those past their deadline are
        answered DEADLINE_EXCEEDED: nothing runs after its deadline."""
        now = self._scheduler.clock()
        live, expired = [], 0
        for part in parts:
            request = part.request
            if request.deadline is not None and request.deadline <= now:
                _expire(request, "Deadline exceeded while waiting in the batching queue")
                expired += 1
            elif not request.done:
                live.append(part)
        return live, expired

    def close(self) -> None:
        self._scheduler.remove_queues(list(self._queues.values()))
        self._inner.close()


class MetricsMeter:
    """A queue's reports, as the server's Prometheus metrics: Servoir's (labelled by model)
    and TF Serving's batching_session ones. Queues report from the event loop only, so these
    are the loop's lock-free metrics."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._depth = metrics.queue_depth.child(model)
        self._size = metrics.batch_size.child(model)
        self._padding = metrics.batch_padding.child(model)
        self._wait = metrics.queue_wait.child(model)
        # TF Serving's model server labels queuing latency with an empty thread pool name.
        self._tf_wait = metrics.tf_queuing_latency.child("")
        self._tf_runs = metrics.tf_wrapped_run_count.child()
        self._tf_input = metrics.tf_input_batch_size.child()
        self._tf_processed = metrics.tf_processed_batch_size.child()
        self._tf_padding = metrics.tf_padding_size

    def received(self, rows: int, tensors: int) -> None:
        for _ in range(tensors):  # as TF: one sample per input tensor
            self._tf_input.observe(rows)

    def queued(self, delta: int) -> None:
        self._depth[0] += delta

    def ran(self, rows: int, padding: int, waits: Sequence[float]) -> None:
        self._size.observe(rows - padding)
        self._padding.observe(padding)
        self._tf_runs[0] += 1
        self._tf_processed.observe(rows)
        self._tf_padding.child(str(rows)).observe(padding)
        for wait in waits:
            self._wait.observe(wait)
            self._tf_wait.observe(wait * 1e6)


@dataclass(frozen=True, slots=True)
class Batching:
    """What the repository needs to batch the versions it loads."""

    scheduler: BatchScheduler
    config: BatchingConfig
    metrics: Metrics | None = None

    def options_for(self, version_path: Path, platform: str) -> BatchingOptions | None:
        """The version's batching options, or None when it is not batched."""
        config = self.config
        if not config.batches(platform):
            return None
        if platform in config.platforms:  # --platform_config_file's entry
            options, per_model = config.platforms[platform], platform in config.per_model_platforms
        else:
            options, per_model = config.options, config.per_model
        if not per_model:
            return options
        path = version_path / PER_MODEL_FILE
        if not path.is_file():
            return None  # TF: with per-model parameters on, only models with the file batch
        # The file's name, never its path: load errors reach clients in the model status.
        return read_parameters(path, shown_as=PER_MODEL_FILE)

    def wrap(
        self, loader: Loader, name: str, version: int, version_path: Path, platform: str
    ) -> Loader:
        return BatchingLoader(loader, self, name, version, version_path, platform)


class BatchingLoader:
    """Loads through the wrapped loader, then composes batching around what it returns."""

    def __init__(
        self,
        inner: Loader,
        batching: Batching,
        model: str,
        version: int,
        version_path: Path,
        platform: str,
    ) -> None:
        self._inner = inner
        self._batching = batching
        self._model = model
        self._name = f"{model}/{version}"
        self._path = version_path
        self._platform = platform

    def load(self) -> Servable:
        # A bad per-model file fails before loading.
        options = self._batching.options_for(self._path, self._platform)
        servable = self._inner.load()
        if options is None:
            return servable
        if not getattr(servable, "batchable", False):
            log.info("model %s has no variable dim 0 to batch along: unbatched", self._name)
            return servable
        log.info(
            "model %s batches: max_batch_size %d, batch_timeout_micros %d, max_enqueued_batches %d",
            self._name,
            options.max_batch_size,
            options.batch_timeout_micros,
            options.max_enqueued_batches,
        )
        metrics = self._batching.metrics
        return BatchingServable(
            servable,
            self._batching.scheduler,
            self._name,
            options,
            self._batching.config.length_buckets,
            None if metrics is None else MetricsMeter(metrics, self._model),
            self._batching.config.nearest_length,
        )
