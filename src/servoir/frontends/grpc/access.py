"""Access log lines for gRPC calls: method, model, status code and latency, never payloads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from servoir.errors import Code
from servoir.logs import AccessLog


def cancel_code(context: Any) -> Code:
    """Why a call's handler was cancelled: its deadline passed, or the client cancelled."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return Code.DEADLINE_EXCEEDED
    return Code.CANCELLED


def _model(request: Any) -> str:
    """The model a request names, in either protocol (TF's model_spec, V2's model_name)."""
    spec = getattr(request, "model_spec", None)
    if spec is not None:
        return str(spec.name)
    return str(getattr(request, "model_name", "") or getattr(request, "name", ""))


class AccessLogInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, access: AccessLog) -> None:
        self._access = access

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: Any,
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or not self._access.enabled:
            return handler
        behavior = handler.unary_unary
        method: str = details.method

        async def logged(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            status = "OK"
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                status = cancel_code(context).name
                raise
            except BaseException:
                code = context.code()
                status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                self._access.record(
                    "grpc", "POST", method, _model(request), "", status,
                    time.perf_counter() - started,
                )  # fmt: skip

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
