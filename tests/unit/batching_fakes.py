"""A fake batchable servable for the batching tests: records every batch it runs and can be
held at a gate, so tests decide exactly what is queued while a batch thread is busy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import numpy as np

from servoir.batching.options import BatchingOptions
from servoir.batching.scheduler import BatchScheduler
from servoir.batching.servable import BatchingServable
from servoir.types import DEFAULT_SIGNATURE, Array, DataType, Signature, TensorSpec

SPEC = TensorSpec("x", DataType.DT_FLOAT, (-1, -1))
SIGNATURE = Signature({"x": SPEC}, {"y": SPEC, "total": TensorSpec("t", DataType.DT_FLOAT, (-1,))})


class FakeServable:
    """y = 2x and total = row sums; a closed gate holds every run until opened."""

    batchable = True
    platform = "fake"
    checks_shapes = False

    def __init__(
        self,
        name: str = "fake",
        log: list[str] | None = None,
        answer: Callable[[Array], dict[str, Array]] | None = None,
    ) -> None:
        self.name = name
        self.log = log if log is not None else []  # names, in the order batches ran
        self.batches: list[Array] = []
        self.deadlines: list[float | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.running = asyncio.Event()
        self.answer = answer
        self.closed = False
        self.runs_on_loop = False  # what a runtime reports once it measured its runs fast

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return {DEFAULT_SIGNATURE: SIGNATURE}

    def hold(self) -> None:
        self.gate.clear()
        self.running.clear()

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        x = inputs["x"]
        self.batches.append(x.copy())
        self.deadlines.append(deadline)
        self.log.append(self.name)
        self.running.set()
        await self.gate.wait()
        if self.answer is not None:
            return self.answer(x)
        values = {"y": x * 2, "total": x.sum(axis=tuple(range(1, x.ndim)))}
        return {k: values[k] for k in output_aliases}

    def close(self) -> None:
        self.closed = True


def batching(fake: FakeServable, scheduler: BatchScheduler, **options: Any) -> BatchingServable:
    buckets = options.pop("length_buckets", None)
    return BatchingServable(fake, scheduler, fake.name, BatchingOptions(**options), buckets)


def call(
    servable: BatchingServable, x: Array, deadline: float | None = None
) -> Coroutine[Any, Any, dict[str, Array]]:
    return servable.run(DEFAULT_SIGNATURE, {"x": x}, ("y", "total"), deadline)


def row(value: float, width: int = 2) -> Array:
    return np.full((1, width), value, np.float32)


async def turns(count: int = 10) -> None:
    """Let the loop run `count` turns (dispatch is deferred by one turn); no wall time."""
    for _ in range(count):
        await asyncio.sleep(0)
