"""A runtime runs a model on the event loop once it has measured its runs fast, and says so
(`runs_on_loop`): the batch scheduler then never shares that model's batches out between
threads, because they could only run one after another."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from servoir.runtimes.registry import RuntimeContext, RuntimeOptions, loader_factory
from servoir.types import DEFAULT_SIGNATURE

MLP = Path(__file__).resolve().parents[2] / "examples" / "models" / "mlp"


@pytest.mark.parametrize(("inline_max", "on_loop"), [(10.0, True), (0.0, False)])
def test_a_model_measured_fast_runs_on_the_loop(inline_max: float, on_loop: bool) -> None:
    async def runs() -> list[bool]:
        seen = []
        for _ in range(3):
            seen.append(servable.runs_on_loop)
            x = np.zeros((1, 784), np.float32)
            await servable.run(DEFAULT_SIGNATURE, {"x": x}, ("logits",), None)
        return seen

    with ThreadPoolExecutor(1) as executor:
        options = RuntimeOptions(inline_run_max_seconds=inline_max)
        loader = loader_factory("onnx")("mlp", 1, MLP / "1", RuntimeContext(executor, options))
        servable = loader.load()
        try:
            # Unmeasured, a model runs on the executor; after a run it is known.
            assert asyncio.run(runs()) == [False, on_loop, on_loop]
        finally:
            servable.close()
