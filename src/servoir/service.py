"""The transport-free serving API every front end calls: predict, status, metadata, listing.

Front ends decode their wire format into `servoir.types` requests, call this, and encode the
result; everything a request must be checked for (signature, input names, dtypes, shapes,
output filter, deadline) is checked here once, for every protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from servoir.core.manager import Manager, VersionStatus
from servoir.core.states import State
from servoir.errors import Code, ServingError
from servoir.inference.api import (
    ClassifyResult,
    ExampleApi,
    ExampleRequest,
    MultiInferenceRequest,
    MultiInferenceResult,
    RegressResult,
)
from servoir.metrics import Metrics
from servoir.types import (
    DEFAULT_SIGNATURE,
    Array,
    DataType,
    ModelSpec,
    PredictRequest,
    PredictResult,
    Signature,
    TensorSpec,
)

_V2_STATES = {
    State.START: "LOADING",
    State.LOADING: "LOADING",
    State.AVAILABLE: "READY",
    State.UNLOADING: "UNLOADING",
    State.END: "UNAVAILABLE",
}


class SignatureNotFound(ServingError):
    """Raised with gRPC's text; REST front ends word it their own way (contract 1.2, 2.3)."""

    def __init__(self, signature_name: str) -> None:
        super().__init__(
            Code.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.'
        )
        self.signature_name = signature_name


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    version: int
    platform: str
    signatures: Mapping[str, Signature]


def _braced(names: Sequence[str]) -> str:
    return "{" + ",".join(sorted(names)) + "}"


def _shape_text(shape: Sequence[int] | None) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]" if shape is not None else "<unknown>"


def check_inputs(signature: Signature, inputs: Mapping[str, Array], check_shapes: bool) -> None:
    expected = signature.inputs
    sent = list(inputs)
    extra = [k for k in sent if k not in expected]
    missing = [k for k in expected if k not in inputs and k not in signature.defaults]
    if extra and len(sent) == len(expected) - len(signature.defaults) and len(extra) == 1:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input tensor alias not found in signature: {extra[0]}. "
            f"Inputs expected to be in the set {_braced(list(expected))}.",
        )
    if extra or missing:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_braced(sent)}) != len({_braced(list(expected))}). "
            f"Sent extra: {_braced(extra)}. Missing but required: {_braced(missing)}.",
        )
    for alias, array in inputs.items():
        _check_tensor(alias, expected[alias], array, check_shapes)


def _check_tensor(alias: str, spec: TensorSpec, array: Array, check_shapes: bool) -> None:
    try:
        got = DataType.from_numpy(array.dtype)
    except ValueError:
        got = DataType.DT_INVALID
    if got is not spec.dtype:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input '{alias}' expects dtype {spec.dtype.short_name} ({spec.dtype.name}) "
            f"but got {got.short_name} ({got.name})",
        )
    if not check_shapes or spec.shape is None:
        return
    shape = array.shape
    if len(shape) != len(spec.shape) or any(
        want not in (-1, have) for want, have in zip(spec.shape, shape, strict=False)
    ):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input '{alias}' expects shape {_shape_text(spec.shape)} but got {_shape_text(shape)}",
        )


def select_outputs(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {_braced(list(signature.outputs))}.",
            )
        if alias in seen:
            raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


PredictObserver = Callable[[Mapping[str, Array], PredictResult, float], None]


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One row of the model repository index (KServe V2 repository extension)."""

    name: str
    version: int | None
    state: str  # READY | UNAVAILABLE | LOADING | UNLOADING
    reason: str


class ModelControl(Protocol):
    """Changes the set of served models; the server implements it (it owns the source)."""

    def known_models(self) -> list[str]: ...

    async def load_model(self, name: str) -> None: ...

    async def unload_model(self, name: str) -> None: ...

    async def reload_config(self, config: Any) -> None:
        """Replace the model set with a tensorflow.serving.ModelServerConfig message."""
        ...


class Service:
    def __init__(
        self,
        manager: Manager,
        control: ModelControl | None = None,
        metrics: Metrics | None = None,
        *,
        check_signature_method_names: bool = False,
    ) -> None:
        self._manager = manager
        self._control = control
        self._metrics = metrics
        # Classify, Regress and MultiInference (--enable_signature_method_name_check).
        self._examples = ExampleApi(
            manager, metrics, check_method_names=check_signature_method_names
        )
        self._observers: list[PredictObserver] = []
        self._draining = False

    def add_observer(self, observer: PredictObserver) -> None:
        """Called after each successful predict with its inputs, result and run seconds; it
        runs on the event loop, so it must only hand work off (see request_log)."""
        self._observers.append(observer)

    # ---- model control -----------------------------------------------------------------

    def set_control(self, control: ModelControl) -> None:
        self._control = control

    def _require_control(self) -> ModelControl:
        if self._control is None:
            raise ServingError(Code.UNIMPLEMENTED, "model control is not available")
        return self._control

    async def load_model(self, name: str) -> None:
        """Serve `name` (again): its versions are scanned and loaded; returns when settled.
        Raises NOT_FOUND for a model the server does not know, or the load error."""
        await self._require_control().load_model(name)

    async def unload_model(self, name: str) -> None:
        """Stop serving `name`; returns when its versions are unloaded."""
        await self._require_control().unload_model(name)

    async def reload_config(self, config: Any) -> None:
        await self._require_control().reload_config(config)

    def repository_index(self) -> list[RepositoryEntry]:
        control = self._require_control()
        entries: list[RepositoryEntry] = []
        for name in control.known_models():
            statuses = self._manager.status(name)
            if not statuses:
                entries.append(RepositoryEntry(name, None, "UNAVAILABLE", "unloaded"))
            for st in statuses:
                state = _V2_STATES.get(st.state, "UNAVAILABLE")
                reason = st.error.message if st.error else ""
                entries.append(RepositoryEntry(name, st.version, state, reason))
        return entries

    # ---- health ------------------------------------------------------------------------

    def start_draining(self) -> None:
        """From now on the server reports not ready (it is shutting down)."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def model_ready(self, spec: ModelSpec) -> bool:
        try:
            self._manager.resolve_version(spec)
        except ServingError:
            return False
        return True

    def server_ready(self) -> bool:
        """Ready when not draining and every configured model has an AVAILABLE version."""
        if self._draining:
            return False
        return all(self.model_ready(ModelSpec(name)) for name in self._manager.model_names())

    async def predict(self, request: PredictRequest) -> PredictResult:
        metrics = self._metrics
        if metrics is None:
            return await self._predict(request)
        return await metrics.measured(request.model.name, request.protocol, self._predict(request))

    async def _predict(self, request: PredictRequest) -> PredictResult:
        spec = request.model
        async with self._manager.handle(spec) as handle:
            servable = handle.servable
            signature_name = spec.signature_name or DEFAULT_SIGNATURE
            signature = servable.signatures.get(signature_name)
            if signature is None:
                raise SignatureNotFound(signature_name)
            given = request.inputs
            inputs = given(signature) if callable(given) else given
            check_inputs(signature, inputs, servable.checks_shapes)
            aliases = select_outputs(signature, request.output_filter)
            deadline = request.deadline
            if deadline is not None and time.monotonic() >= deadline:
                raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded")
            started = time.perf_counter()
            outputs = await servable.run(signature_name, inputs, aliases, deadline)
            seconds = time.perf_counter() - started
            result = PredictResult(spec.name, handle.id.version, signature_name, outputs, signature)
            if self._metrics is not None:
                self._metrics.tf_runtime(spec.name, "Predict", servable.platform, seconds)
            for observer in self._observers:
                observer(inputs, result, seconds)
            return result

    # ---- tf.Example APIs (servoir.inference.api) -----------------------------------------

    async def classify(self, request: ExampleRequest) -> ClassifyResult:
        return await self._examples.classify(request)

    async def regress(self, request: ExampleRequest) -> RegressResult:
        return await self._examples.regress(request)

    async def multi_inference(self, request: MultiInferenceRequest) -> MultiInferenceResult:
        return await self._examples.multi_inference(request)

    def metadata(self, spec: ModelSpec) -> ModelMetadata:
        with_version = self._manager.handle(spec)
        servable = with_version.servable
        return ModelMetadata(
            spec.name, with_version.id.version, servable.platform, servable.signatures
        )

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        statuses = self._manager.status(name)
        if not statuses:
            reason = self._manager.model_error(name)
            suffix = f" ({reason})" if reason else ""
            raise ServingError(
                Code.NOT_FOUND, f"Could not find any versions of model {name}{suffix}"
            )
        if version is None:
            return statuses
        chosen = [s for s in statuses if s.version == version]
        if not chosen:
            raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
        return chosen

    def statuses(self, name: str) -> list[VersionStatus]:
        """Every version's status, possibly none (no version directory found yet)."""
        return self._manager.status(name)

    def model_names(self) -> list[str]:
        return self._manager.model_names()

    def model_known(self, name: str) -> bool:
        """Served now, or in the repository for model control to load (V2's "known")."""
        if name in self._manager.model_names():
            return True
        return self._control is not None and name in self._control.known_models()

    def resolve_version(self, spec: ModelSpec) -> int:
        return self._manager.resolve_version(spec)
