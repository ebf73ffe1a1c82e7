"""Warmup: replay `<version>/assets.extra/tf_serving_warmup_requests` before a version serves.

The file is a TFRecord of tensorflow.serving.PredictionLog records, as TensorFlow Serving
reads it: predict, classify, regress and multi-inference logs, replayed through the same
code as live requests; it works for every runtime. A version with a warmup file becomes
AVAILABLE only after every record ran (each `iterations` times); any unreadable record or
failing request fails the load, so a version that cannot answer its own recorded traffic
never serves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servoir.core.handle import Harness, ServableHandle
from servoir.core.servable import Loader, Servable
from servoir.core.states import ServableId, State
from servoir.errors import Code, ServingError
from servoir.frontends.grpc.tf_common import from_proto
from servoir.frontends.grpc.tf_examples import inference_tasks, serialized_examples
from servoir.frontends.grpc.tf_tensors import decode_tensor
from servoir.inference.api import ExampleApi, ExampleRequest, MultiInferenceRequest
from servoir.protos.tensorflow_serving.apis import prediction_log_pb2
from servoir.service import check_inputs, select_outputs
from servoir.tfrecord import RecordError, read_records
from servoir.types import DEFAULT_SIGNATURE, ModelSpec

log = logging.getLogger("servoir.warmup")

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000


@dataclass(frozen=True, slots=True)
class WarmupOptions:
    enabled: bool = True
    iterations: int = 1  # times each record runs; 0 reads and checks the file, runs nothing


class WarmupLoader:
    """Wraps a runtime's loader: load, then replay the warmup file, if there is one."""

    def __init__(self, inner: Loader, version_path: Path, options: WarmupOptions) -> None:
        self._inner = inner
        self._file = version_path / WARMUP_FILE
        self._options = options

    def load(self) -> Servable:
        servable = self._inner.load()
        if not self._options.enabled or not self._file.is_file():
            return servable
        try:
            records = self._read()
            count = asyncio.run(self._replay(servable, records))
        except Exception:
            servable.close()
            raise
        log.info("warmed up with %d record(s) from %s", count, WARMUP_FILE)
        return servable

    def _read(self) -> list[Any]:
        logs = []
        try:
            with self._file.open("rb") as stream:
                for index, data in enumerate(read_records(stream)):
                    if index >= MAX_RECORDS:
                        raise _error(
                            f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) "
                            f"at {WARMUP_FILE}"
                        )
                    entry = prediction_log_pb2.PredictionLog()
                    entry.ParseFromString(data)
                    logs.append(entry)
        except RecordError as e:
            raise _error(f"cannot read {WARMUP_FILE}: {e}") from None
        except ValueError as e:  # a record that is not a PredictionLog
            raise _error(f"cannot parse a record of {WARMUP_FILE}: {e}") from None
        return logs

    async def _replay(self, servable: Servable, logs: list[Any]) -> int:
        iterations = self._options.iterations
        examples = ExampleApi(_Loading(servable), None, check_method_names=False)
        for index, entry in enumerate(logs):
            kind = entry.WhichOneof("log_type")
            if kind not in _REPLAYED:
                raise ServingError(
                    Code.UNIMPLEMENTED,
                    f"Unsupported log_type for warmup: {kind} (record {index} of {WARMUP_FILE})",
                )
            for _ in range(iterations):
                try:
                    await _replay_one(servable, examples, kind, getattr(entry, kind).request)
                except ServingError as e:
                    raise _error(f"warmup request {index} failed: {e.message}") from None
        return len(logs)


_REPLAYED = ("predict_log", "classify_log", "regress_log", "multi_inference_log")


class _Loading:
    """The one version being warmed up, handed out as the manager would hand it out."""

    def __init__(self, servable: Servable) -> None:
        self._harness = Harness(ServableId("warmup", 0), None, State.AVAILABLE, None, servable)

    def handle(self, spec: ModelSpec) -> ServableHandle:
        return ServableHandle(self._harness)


async def _replay_one(servable: Servable, examples: ExampleApi, kind: str, request: Any) -> None:
    if kind == "predict_log":
        await _predict(servable, request)
        return
    if kind == "multi_inference_log":
        spec, tasks = inference_tasks(request)
        batch = serialized_examples(request.input)
        await examples.multi_inference(MultiInferenceRequest(spec, tasks, batch))
        return
    spec = from_proto(request.model_spec)
    batch = serialized_examples(request.input)
    if not batch:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    replay = examples.classify if kind == "classify_log" else examples.regress
    await replay(ExampleRequest(spec, batch))


async def _predict(servable: Servable, request: Any) -> None:
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    inputs = {alias: decode_tensor(alias, proto) for alias, proto in request.inputs.items()}
    check_inputs(signature, inputs, servable.checks_shapes)
    outputs = select_outputs(signature, list(request.output_filter))
    await servable.run(name, inputs, outputs, None)


def _error(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)
