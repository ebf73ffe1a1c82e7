"""The KServe V2 operations, transport-free: what both the REST mount and the gRPC servicer call.

How Servoir's models appear in V2 (docs/api.md, "KServe V2"):
- a V2 model is a model's `serving_default` signature; V2 inputs and outputs are that
  signature's aliases. The request parameter `signature_name` picks another signature.
- V2 versions are the same integer versions; no version means the highest AVAILABLE one.
  Version labels are a TensorFlow Serving notion and are not reachable through V2.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from servoir import __version__
from servoir.core.states import State
from servoir.errors import Code, ServingError, invalid_argument
from servoir.frontends.v2.datatypes import DATATYPES, platform_name, v2_name, v2_name_of_array
from servoir.service import RepositoryEntry, Service
from servoir.types import (
    DEFAULT_SIGNATURE,
    Array,
    ModelSpec,
    PredictRequest,
    Signature,
    TensorSpec,
)

INT64_MAX = 2**63 - 1
MODEL_CONTROL_DISABLED = "model control is disabled; start the server with --enable_model_control"


@dataclass(frozen=True, slots=True)
class V2Options:
    # The repository extension (load/unload) changes what is served, so it is opt-in.
    model_control: bool = False
    # Deadline of every inference unless the request asks for less (REST uses
    # --rest_api_timeout_in_ms; gRPC relies on the client's deadline).
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a variable dimension; () also for unknown rank


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, slots=True)
class InputTensor:
    """A decoded request input: V2-level checks done, model-level checks still to come."""

    name: str
    datatype: str
    array: Array


@dataclass(frozen=True, slots=True)
class InferRequest:
    model: ModelSpec
    inputs: Sequence[InputTensor]
    outputs: tuple[str, ...] = ()  # requested output names; empty: every output
    id: str = ""
    timeout_s: float | None = None  # the request's own `timeout` parameter
    protocol: str = "v2_rest"  # for metrics and logs: v2_rest or v2_grpc


@dataclass(frozen=True, slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: Mapping[str, Array]


def parse_version(text: str) -> int | None:
    """A V2 version string: "" (the server's choice) or a non-negative int64."""
    if text == "":
        return None
    if text.isdigit() and text.isascii() and int(text) <= INT64_MAX:
        return int(text)
    raise invalid_argument(f"model version must be a non-negative integer, got '{text}'")


def output_datatype(array: Array) -> str:
    return v2_name_of_array(array.dtype)


class V2Api:
    def __init__(self, service: Service, options: V2Options) -> None:
        self._service = service
        self.options = options

    # ---- health and metadata -------------------------------------------------------------

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        """(name, version, extensions): only extensions that really answer are listed."""
        extensions = ["binary_tensor_data"]
        if self.options.model_control:
            extensions.append("model_repository")
        return "servoir", __version__, tuple(extensions)

    def server_ready(self) -> bool:
        return self._service.server_ready()

    def model_ready(self, name: str, version: str) -> bool:
        return self._service.model_ready(ModelSpec(name, parse_version(version)))

    def not_ready(self, name: str, version: int | None) -> ServingError | None:
        """UNAVAILABLE for a known model (and version) with nothing ready to serve; None when
        the model or the version is unknown: V2 answers 404 only for those."""
        if not self._service.model_known(name):
            return None
        if version is not None and all(s.version != version for s in self._service.statuses(name)):
            return None
        shown = f" version {version}" if version is not None else ""
        return ServingError(Code.UNAVAILABLE, f"model '{name}'{shown} is not ready")

    def _served(self, error: ServingError, name: str, version: int | None) -> ServingError:
        """TF Serving's "Servable not found" for a model that exists but is not ready
        becomes V2's not-ready error."""
        if error.code is not Code.NOT_FOUND:
            return error
        return self.not_ready(name, version) or error

    def model_metadata(self, name: str, version: str) -> ModelMetadata:
        number = parse_version(version)
        try:
            meta = self._service.metadata(ModelSpec(name, number))
        except ServingError as e:
            raise self._served(e, name, number) from None
        available = sorted(
            s.version for s in self._service.statuses(name) if s.state is State.AVAILABLE
        )
        signature = meta.signatures.get(DEFAULT_SIGNATURE)
        return ModelMetadata(
            name=name,
            versions=tuple(str(v) for v in available),
            platform=platform_name(meta.platform),
            inputs=_tensors(signature.inputs) if signature else (),
            outputs=_tensors(signature.outputs) if signature else (),
        )

    # ---- inference -----------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        limits = [t for t in (self.options.timeout_s, request.timeout_s) if t is not None]
        deadline = time.monotonic() + min(limits) if limits else None
        predict = PredictRequest(
            request.model,
            functools.partial(match_signature, request.inputs),
            request.outputs,
            deadline,
            request.protocol,
        )
        try:
            result = await self._service.predict(predict)
        except ServingError as e:
            raise self._served(e, request.model.name, request.model.version) from None
        for name, array in result.outputs.items():
            if output_datatype(array) not in DATATYPES:
                raise ServingError(
                    Code.UNIMPLEMENTED,
                    f"output '{name}' has dtype {array.dtype}, which KServe V2 cannot carry",
                )
        return InferResponse(result.name, str(result.version), request.id, result.outputs)

    # ---- model repository extension ------------------------------------------------------

    def require_model_control(self) -> None:
        """PERMISSION_DENIED unless --enable_model_control; checked before anything else."""
        if not self.options.model_control:
            raise ServingError(Code.PERMISSION_DENIED, MODEL_CONTROL_DISABLED)

    def repository_index(self, ready_only: bool) -> list[RepositoryEntry]:
        self.require_model_control()
        entries = self._service.repository_index()
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load_model(self, name: str, parameters: Mapping[str, object]) -> None:
        self.require_model_control()
        overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise invalid_argument(
                f"loading model '{name}' with {', '.join(overrides)} is not supported: "
                "models load from the model repository only"
            )
        await self._service.load_model(name)

    async def unload_model(self, name: str) -> None:
        self.require_model_control()
        await self._service.unload_model(name)


def _tensors(specs: Mapping[str, TensorSpec]) -> tuple[TensorMetadata, ...]:
    # An unknown rank has no V2 spelling; it is shown as an empty shape.
    return tuple(
        TensorMetadata(alias, v2_name(spec.dtype), spec.shape or ())
        for alias, spec in specs.items()
    )


def match_signature(inputs: Sequence[InputTensor], signature: Signature) -> dict[str, Array]:
    """The request's inputs by alias, after the V2-level model checks: every name is an input
    of the signature, given once, with the signature's datatype. Shapes and missing inputs
    are the service's checks (Service.check_inputs), shared by every protocol."""
    arrays: dict[str, Array] = {}
    for tensor in inputs:
        spec = signature.inputs.get(tensor.name)
        if spec is None:
            known = ", ".join(sorted(signature.inputs))
            raise invalid_argument(
                f"unknown input '{tensor.name}': the model's inputs are {known or '(none)'}"
            )
        if tensor.name in arrays:
            raise invalid_argument(f"input '{tensor.name}' is given more than once")
        expected = v2_name(spec.dtype)
        if tensor.datatype != expected:
            raise invalid_argument(
                f"input '{tensor.name}': the model expects datatype {expected} "
                f"but the request has {tensor.datatype}"
            )
        arrays[tensor.name] = tensor.array
    return arrays
