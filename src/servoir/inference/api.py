"""Classify, Regress and MultiInference: tf.Example input, TF Serving's rules (contract 1.5, 2.3).

Front ends hand over serialized tf.Examples (an ExampleListWithContext already merged:
serialize(context) + serialize(example), which protobuf reads as a merge). The signature is
resolved and checked here, the examples are fed as one 1-D DT_STRING tensor to its `inputs`,
and the outputs are checked and returned as arrays for the front end to encode.

A model none of whose signatures takes `inputs` (every ONNX or PyTorch model) cannot serve
these APIs at all: after TF Serving's request checks it answers UNIMPLEMENTED "use Predict",
which says more than TF's "No classification inputs found in SignatureDef".
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from servoir.core.handle import ServableHandle
from servoir.core.servable import Servable
from servoir.errors import Code, ServingError, invalid_argument
from servoir.inference import checks
from servoir.metrics import Metrics
from servoir.types import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Array, ModelSpec

R = TypeVar("R", bound="ClassifyResult | RegressResult | MultiInferenceResult")
T = TypeVar("T")


@dataclass(slots=True)
class ExampleRequest:
    """A Classify or Regress request."""

    model: ModelSpec
    examples: Sequence[bytes]  # serialized tf.Example, context already merged in
    deadline: float | None = None  # absolute time.monotonic()
    protocol: str = "internal"


@dataclass(frozen=True, slots=True)
class InferenceTask:
    model: ModelSpec  # name and signature_name are read; the servable is the request's
    method_name: str  # CLASSIFY_METHOD or REGRESS_METHOD


@dataclass(slots=True)
class MultiInferenceRequest:
    model: ModelSpec  # the servable to run: TF Serving resolves the first task's spec
    tasks: Sequence[InferenceTask]
    examples: Sequence[bytes]
    deadline: float | None = None
    protocol: str = "internal"


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    name: str
    version: int
    signature_name: str
    labels: Array | None  # [B, C] bytes; None when the signature has no `classes`
    scores: Array | None  # [B, C] float32; None when the signature has no `scores`


@dataclass(frozen=True, slots=True)
class RegressResult:
    name: str
    version: int
    signature_name: str
    values: Array  # [B] float32


@dataclass(frozen=True, slots=True)
class MultiInferenceResult:
    name: str
    version: int
    results: Sequence[ClassifyResult | RegressResult]  # in task order
    signature_name: str = ""  # for metrics: one request, several signatures


@runtime_checkable
class TensorRunner(Protocol):
    """Optional on a servable: one run fetching any of its tensors by name. MultiInference
    uses it to compute every task's outputs in a single run, as TF Serving does."""

    async def run_tensors(
        self, feeds: Mapping[str, Array], fetches: Sequence[str], deadline: float | None
    ) -> list[Array]: ...


@dataclass(frozen=True, slots=True)
class _Task:
    signature_name: str
    method_name: str
    fetch: list[str]  # output aliases


class Handles(Protocol):
    """Where servables come from: the manager, or (for warmup) one version being loaded."""

    def handle(self, spec: ModelSpec) -> ServableHandle: ...


class ExampleApi:
    def __init__(
        self, manager: Handles, metrics: Metrics | None, *, check_method_names: bool
    ) -> None:
        self._manager = manager
        self._metrics = metrics
        # --enable_signature_method_name_check: off by default, as TF2 exports write
        # tensorflow/serving/predict into every signature.
        self._check_method_names = check_method_names

    async def classify(self, request: ExampleRequest) -> ClassifyResult:
        return await self._measured(request.model, request.protocol, self._classify(request))

    async def regress(self, request: ExampleRequest) -> RegressResult:
        return await self._measured(request.model, request.protocol, self._regress(request))

    async def multi_inference(self, request: MultiInferenceRequest) -> MultiInferenceResult:
        return await self._measured(request.model, request.protocol, self._multi(request))

    async def _classify(self, request: ExampleRequest) -> ClassifyResult:
        async with self._manager.handle(request.model) as handle:
            servable, version = handle.servable, handle.id.version
            name = self._signature(servable, request, "Classify", CLASSIFY_METHOD, version)
            fetch = checks.classify_outputs(servable.signatures[name], self._check_method_names)
            batch = checks.example_batch(request.examples)
            _check_deadline(request.deadline)
            run = servable.run(name, {checks.INPUTS: batch}, fetch, request.deadline)
            outputs = await self._timed(request.model.name, "Classify", servable, run)
        self._count_examples(request.model.name, len(batch))
        labels, scores = checks.classifications(len(batch), outputs)
        return ClassifyResult(request.model.name, version, name, labels, scores)

    async def _regress(self, request: ExampleRequest) -> RegressResult:
        async with self._manager.handle(request.model) as handle:
            servable, version = handle.servable, handle.id.version
            name = self._signature(servable, request, "Regress", REGRESS_METHOD, version)
            fetch = checks.regress_outputs(servable.signatures[name], self._check_method_names)
            batch = checks.example_batch(request.examples)
            _check_deadline(request.deadline)
            run = servable.run(name, {checks.INPUTS: batch}, fetch, request.deadline)
            outputs = await self._timed(request.model.name, "Regress", servable, run)
        self._count_examples(request.model.name, len(batch))
        values = checks.regression(len(batch), outputs[checks.OUTPUTS])
        return RegressResult(request.model.name, version, name, values)

    async def _timed(self, model: str, api: str, servable: Servable, run: Awaitable[T]) -> T:
        """Await the model's run, keeping TF Serving's runtime_latency."""
        started = time.perf_counter()
        result = await run
        if self._metrics is not None:
            self._metrics.tf_runtime(model, api, servable.platform, time.perf_counter() - started)
        return result

    def _count_examples(self, model: str, count: int) -> None:
        if self._metrics is not None:
            self._metrics.tf_examples(model, count)

    def _signature(
        self, servable: Servable, request: ExampleRequest, api: str, method: str, version: int
    ) -> str:
        name = request.model.signature_name or DEFAULT_SIGNATURE
        if name not in servable.signatures:
            raise invalid_argument(f"No signature was found with the name: {name}")
        if not _takes_examples(servable):
            checks.example_batch(request.examples)
            raise _unimplemented(api, method, request.model.name, version)
        return name

    async def _multi(self, request: MultiInferenceRequest) -> MultiInferenceResult:
        async with self._manager.handle(request.model) as handle:
            servable, version = handle.servable, handle.id.version
            if not request.tasks:  # only reachable when a model is named ""
                raise invalid_argument("MultiInferenceRequest has no tasks")
            capable = _takes_examples(servable)
            tasks = _plan(request.tasks, servable, capable, self._check_method_names)
            batch = checks.example_batch(request.examples)
            if not capable:
                method = request.tasks[0].method_name
                raise _unimplemented("MultiInference", method, request.model.name, version)
            _check_deadline(request.deadline)
            run = _run_tasks(servable, tasks, batch, request.deadline)
            outputs = await self._timed(request.model.name, "MultiInference", servable, run)
        name = request.model.name
        self._count_examples(name, len(batch))  # once per request, not per task, as in TF
        results: list[ClassifyResult | RegressResult] = []
        for task, arrays in zip(tasks, outputs, strict=True):
            if task.method_name == CLASSIFY_METHOD:
                labels, scores = checks.classifications(len(batch), arrays)
                results.append(ClassifyResult(name, version, task.signature_name, labels, scores))
            else:
                values = checks.regression(len(batch), arrays[checks.OUTPUTS])
                results.append(RegressResult(name, version, task.signature_name, values))
        return MultiInferenceResult(name, version, results)

    async def _measured(self, spec: ModelSpec, protocol: str, work: Awaitable[R]) -> R:
        """Servoir's request metrics, kept as for predict (servoir.service)."""
        metrics = self._metrics
        if metrics is None:
            return await work
        return await metrics.measured(spec.name, protocol, work)


def _plan(
    tasks: Sequence[InferenceTask], servable: Servable, capable: bool, check_method_names: bool
) -> list[_Task]:
    """TF Serving's per-task rules, in its order (multi_inference.cc). For a model that
    cannot take examples only the request's own consistency is checked."""
    model_name = input_name = ""
    planned: list[_Task] = []
    for task in tasks:
        name = task.model.name
        if not name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if model_name and name != model_name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        model_name = name
        signature_name = task.model.signature_name or DEFAULT_SIGNATURE
        if any(p.signature_name == signature_name for p in planned):
            raise invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
        signature = servable.signatures.get(signature_name)
        if signature is None:
            raise invalid_argument(
                f"Requested signature not found in model graph: {signature_name}"
            )
        if task.method_name == CLASSIFY_METHOD:
            fetch = checks.classify_outputs(signature, check_method_names) if capable else []
        elif task.method_name == REGRESS_METHOD:
            fetch = checks.regress_outputs(signature, check_method_names) if capable else []
        else:
            raise ServingError(
                Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
            )
        if capable:
            tensor = signature.inputs[checks.INPUTS].name
            if input_name and tensor != input_name:
                raise invalid_argument("Input tensor must be the same for all Signatures.")
            input_name = tensor
        planned.append(_Task(signature_name, task.method_name, fetch))
    return planned


def _takes_examples(servable: Servable) -> bool:
    return any(checks.INPUTS in s.inputs for s in servable.signatures.values())


async def _run_tasks(
    servable: Servable, tasks: Sequence[_Task], batch: Array, deadline: float | None
) -> list[dict[str, Array]]:
    """Every task's outputs by alias: one run by tensor name where the servable offers it."""
    signatures = [servable.signatures[t.signature_name] for t in tasks]
    if not isinstance(servable, TensorRunner):
        return [
            await servable.run(t.signature_name, {checks.INPUTS: batch}, t.fetch, deadline)
            for t in tasks
        ]
    input_name = signatures[0].inputs[checks.INPUTS].name
    # Sorted, as TF Serving's std::set of names; a tensor two tasks share is fetched once.
    pairs = list(zip(signatures, tasks, strict=True))
    names = sorted({s.outputs[alias].name for s, t in pairs for alias in t.fetch})
    values = await servable.run_tensors({input_name: batch}, names, deadline)
    by_name = dict(zip(names, values, strict=True))
    return [{alias: by_name[s.outputs[alias].name] for alias in t.fetch} for s, t in pairs]


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded")


def _unimplemented(api: str, method: str, model: str, version: int) -> ServingError:
    kind = "classify" if method == CLASSIFY_METHOD else "regress"
    return ServingError(
        Code.UNIMPLEMENTED,
        f"{api} is not supported by model {model} version {version}: "
        f"it has no {kind} signature (use Predict)",
    )
