"""inference.GRPCInferenceService: health, metadata, ModelInfer and the repository extension.

RPCs not overridden here (ModelStreamInfer, ModelConfig, ModelStatistics and Triton's shared
memory, trace and log RPCs) keep the generated base class's UNIMPLEMENTED answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

import grpc

from servoir.errors import Code, ServingError
from servoir.frontends.grpc.server import Registration
from servoir.frontends.v2 import grpc_codec
from servoir.frontends.v2.api import TensorMetadata, V2Api, V2Options, parse_version
from servoir.protos.inference import grpc_service_pb2 as pb
from servoir.protos.inference import grpc_service_pb2_grpc as pb_grpc
from servoir.service import Service
from servoir.status import grpc_code_number, grpc_message

log = logging.getLogger("servoir.v2.grpc")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
_STATUS = MappingProxyType({s.value[0]: s for s in grpc.StatusCode})
T = TypeVar("T")


async def _abort(context: Any, code: Code, message: str) -> NoReturn:
    status = _STATUS.get(grpc_code_number(code), grpc.StatusCode.UNKNOWN)
    await context.abort(status, grpc_message(message))
    raise AssertionError("context.abort returned")  # it raises; this keeps mypy honest


class V2Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, api: V2Api) -> None:
        self._api = api

    async def _run(self, context: Any, work: Awaitable[T]) -> T:
        """`work`'s result, or the RPC aborted with the error's code; never a traceback."""
        try:
            return await work
        except ServingError as e:
            await _abort(context, e.code, e.message)
        except Exception:
            log.exception("unhandled error in a KServe V2 RPC")
            await _abort(context, Code.INTERNAL, "Internal error")

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._api.server_ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        # Like Triton: an unknown model is "not ready", not an error.
        async def work() -> Any:
            return pb.ModelReadyResponse(ready=self._api.model_ready(request.name, request.version))

        return await self._run(context, work())

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        name, version, extensions = self._api.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            meta = self._api.model_metadata(request.name, request.version)
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[_tensor_metadata(t) for t in meta.inputs],
                outputs=[_tensor_metadata(t) for t in meta.outputs],
            )

        return await self._run(context, work())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        # The hot path: _run's handling inlined, without a coroutine per call.
        try:
            version = parse_version(request.model_version)
            decoded = grpc_codec.decode_infer(request, version, context.time_remaining())
            return grpc_codec.encode_infer(await self._api.infer(decoded))
        except ServingError as e:
            await _abort(context, e.code, e.message)
        except Exception:
            log.exception("unhandled error in ModelInfer")
            await _abort(context, Code.INTERNAL, "Internal error")

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            entry = pb.RepositoryIndexResponse.ModelIndex
            models = [
                entry(
                    name=e.name,
                    version="" if e.version is None else str(e.version),
                    state=e.state,
                    reason=e.reason,
                )
                for e in self._api.repository_index(request.ready)
            ]
            return pb.RepositoryIndexResponse(models=models)

        return await self._run(context, work())

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            await self._api.load_model(request.model_name, dict(request.parameters))
            return pb.RepositoryModelLoadResponse()

        return await self._run(context, work())

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            await self._api.unload_model(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._run(context, work())

    # Declared by the proto (tritonclient's stubs know them) but not served. The generated
    # defaults would answer "Unexpected <class 'NotImplementedError'>": say what is missing.
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        await _abort(
            context, Code.UNIMPLEMENTED, "ModelConfig is not supported (use ModelMetadata)"
        )

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        await _abort(
            context,
            Code.UNIMPLEMENTED,
            "ModelStatistics is not supported (use the Prometheus metrics)",
        )

    async def ModelStreamInfer(self, requests: Any, context: Any) -> Any:
        await _abort(
            context, Code.UNIMPLEMENTED, "ModelStreamInfer is not supported (use ModelInfer)"
        )


def _tensor_metadata(tensor: TensorMetadata) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )


def v2_registration(service: Service, options: V2Options) -> Registration:
    """Adds inference.GRPCInferenceService to a gRPC server (see frontends/grpc/server.py)."""

    def register(server: grpc.aio.Server) -> Sequence[str]:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            V2Servicer(V2Api(service, options)), server
        )
        return [SERVICE_NAME]

    return register
