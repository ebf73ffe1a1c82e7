"""What TF Serving's two gRPC servicers share: ModelSpec conversion and error answering."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import grpc

from servoir.errors import Code, ServingError
from servoir.frontends.grpc.access import cancel_code
from servoir.metrics import Metrics
from servoir.status import grpc_code_number, grpc_message
from servoir.types import ModelSpec

log = logging.getLogger("servoir.grpc.tf")

S = TypeVar("S")
R = TypeVar("R")

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(code: Code) -> grpc.StatusCode:
    return _STATUS_CODES.get(grpc_code_number(code), grpc.StatusCode.INTERNAL)


def rpc(
    method: Callable[[S, Any, Any], Awaitable[R]],
) -> Callable[[S, Any, Any], Coroutine[Any, Any, R]]:
    """Turn a servicer method's ServingError into the gRPC status; anything else is a bug:
    logged with its traceback, answered INTERNAL "Internal error" (no detail leaks)."""

    @functools.wraps(method)
    async def answer(self: S, request: Any, context: Any) -> R:
        try:
            return await method(self, request, context)
        except ServingError as e:
            error = e
        except Exception:
            log.exception("unexpected error in %s", method.__qualname__)
            error = ServingError(Code.INTERNAL, "Internal error")
        # Outside the except blocks: abort raises, and must not be caught as a bug above.
        await context.abort(status_code(error.code), grpc_message(error.message))
        raise AssertionError("context.abort returned")  # abort always raises

    return answer


class Metered(Protocol):
    metrics: Metrics | None


M = TypeVar("M", bound=Metered)


def metered(
    api: str,
) -> Callable[[Callable[[M, Any, Any], Awaitable[R]]], Callable[[M, Any, Any], Awaitable[R]]]:
    """Count the call in TF Serving's request_count / request_latency (entrypoint GRPC).
    Goes under @rpc, so it sees the ServingError before it becomes a gRPC status."""

    def wrap(
        method: Callable[[M, Any, Any], Awaitable[R]],
    ) -> Callable[[M, Any, Any], Awaitable[R]]:
        @functools.wraps(method)
        async def answer(self: M, request: Any, context: Any) -> R:
            metrics = self.metrics
            if metrics is None:
                return await method(self, request, context)
            started = time.perf_counter()
            status = Code.OK.name
            try:
                return await method(self, request, context)
            except ServingError as e:
                status = e.code.name
                raise
            except asyncio.CancelledError:  # the deadline passed, or the client cancelled
                status = cancel_code(context).name
                raise
            except Exception:
                status = Code.INTERNAL.name
                raise
            finally:
                name = request.model_spec.name
                if name:
                    metrics.tf_request(name, status, api, "GRPC", time.perf_counter() - started)

        return answer

    return wrap


def model_spec(request: Any) -> ModelSpec:
    """The request's tensorflow.serving.ModelSpec; INVALID_ARGUMENT `Missing ModelSpec`."""
    if not request.HasField("model_spec"):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    return from_proto(request.model_spec)


def from_proto(spec: Any) -> ModelSpec:
    choice = spec.WhichOneof("version_choice")
    # An empty version_label still selects the label branch, as in TF ("Unrecognized ... : ").
    return ModelSpec(
        name=spec.name,
        version=spec.version.value if choice == "version" else None,
        label=spec.version_label if choice == "version_label" else None,
        signature_name=spec.signature_name,
    )


def fill_model_spec(proto: Any, name: str, version: int, signature_name: str = "") -> None:
    proto.name = name
    # Field by field: our Int64Value is the private pool's class (see servoir.protos).
    proto.version.value = version
    proto.signature_name = signature_name


def deadline(context: Any) -> float | None:
    """The client's deadline on the time.monotonic() clock, or None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
