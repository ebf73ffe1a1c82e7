"""Fake loaders and servables for manager and service tests (no runtime, no files)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from servoir.errors import Code, ServingError
from servoir.types import DEFAULT_SIGNATURE, Array, DataType, Signature, TensorSpec

SIGNATURE = Signature(
    inputs={"x": TensorSpec("x:0", DataType.DT_FLOAT, (-1, 2))},
    outputs={
        "y": TensorSpec("y:0", DataType.DT_FLOAT, (-1, 2)),
        "z": TensorSpec("z:0", DataType.DT_FLOAT, (-1,)),
    },
)


class FakeServable:
    platform = "fake"
    checks_shapes = True

    def __init__(self, version: int) -> None:
        self.version = version
        self.closed = threading.Event()
        self.runs = 0

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return {DEFAULT_SIGNATURE: SIGNATURE}

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        self.runs += 1
        x = np.asarray(inputs["x"])
        all_outputs = {"y": x * self.version, "z": x.sum(axis=1)}
        return {k: all_outputs[k] for k in output_aliases}

    def close(self) -> None:
        self.closed.set()


class FakeLoader:
    """Loads a FakeServable; `gate` holds the load until set, `fail` makes it fail."""

    def __init__(self, version: int, *, fail: bool = False, gated: bool = False) -> None:
        self.version = version
        self.fail = fail
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.servable: FakeServable | None = None

    def load(self) -> FakeServable:
        self.gate.wait(timeout=30)
        if self.fail:
            raise ServingError(Code.INVALID_ARGUMENT, f"version {self.version} is corrupt")
        self.servable = FakeServable(self.version)
        return self.servable
