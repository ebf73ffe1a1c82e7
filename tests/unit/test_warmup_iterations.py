"""How many times warmup replays each record: TF Serving's rules for the flag and the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from servoir.errors import ServingError
from servoir.protos.tensorflow_serving.apis import prediction_log_pb2
from servoir.tfrecord import write_records
from servoir.warmup import WARMUP_FILE, WarmupLoader, WarmupOptions
from tests.fakes import FakeServable


class CountingLoader:
    def __init__(self) -> None:
        self.servable = FakeServable(1)  # counts its runs

    def load(self) -> FakeServable:
        return self.servable


def predict_record() -> bytes:
    entry = prediction_log_pb2.PredictionLog()
    tensor = entry.predict_log.request.inputs["x"]
    tensor.dtype = 1  # DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = 2
    tensor.float_val.extend([1.0, 2.0])
    return entry.SerializeToString()


@pytest.mark.parametrize(("iterations", "runs"), [(1, 3), (2, 6), (0, 0)])
def test_each_record_runs_the_given_number_of_times(
    tmp_path: Path, iterations: int, runs: int
) -> None:
    (tmp_path / WARMUP_FILE).parent.mkdir()
    with (tmp_path / WARMUP_FILE).open("wb") as stream:
        write_records(stream, [predict_record()] * 3)
    loader = CountingLoader()
    servable = WarmupLoader(loader, tmp_path, WarmupOptions(True, iterations)).load()
    assert servable is loader.servable
    assert loader.servable.runs == runs
    assert not loader.servable.closed.is_set()


def test_zero_iterations_still_reads_the_file(tmp_path: Path) -> None:
    # TF reads and parses every record even when it replays none: a bad file still fails.
    (tmp_path / WARMUP_FILE).parent.mkdir()
    (tmp_path / WARMUP_FILE).write_bytes(b"garbage")
    loader = CountingLoader()
    with pytest.raises(ServingError) as caught:
        WarmupLoader(loader, tmp_path, WarmupOptions(True, 0)).load()
    assert "cannot read assets.extra/tf_serving_warmup_requests" in caught.value.message
    assert loader.servable.closed.is_set()
