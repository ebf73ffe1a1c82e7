"""The /v2 mount: KServe V2 over REST on the same port as TensorFlow Serving's /v1 API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from servoir.errors import Code, ServingError, invalid_argument
from servoir.frontends.rest import asgi
from servoir.frontends.rest.app import CORS_HEADERS, RestOptions
from servoir.frontends.v2 import rest_routes
from servoir.frontends.v2.api import ModelMetadata, TensorMetadata, V2Api, V2Options, parse_version
from servoir.frontends.v2.rest_codec import HEADER_LENGTH, decode_infer, encode_infer
from servoir.service import RepositoryEntry, Service
from servoir.status import http_status

log = logging.getLogger("servoir.v2.rest")

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class _Reply:
    """A 200 answer."""

    body: bytes
    headers: Headers = field(default_factory=lambda: list(asgi.JSON_HEADERS))


class V2RestApi:
    def __init__(self, service: Service, rest: RestOptions, options: V2Options) -> None:
        # REST predicts share TF Serving's --rest_api_timeout_in_ms deadline.
        self._api = V2Api(service, replace(options, timeout_s=rest.timeout_s))
        self._rest = rest
        self._cors: Headers = CORS_HEADERS if rest.enable_cors else []
        self._gone = asgi.GoneWatch()

    def matches(self, path: str) -> bool:
        return rest_routes.matches(path)

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        method: str = scope["method"]
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        path = path.split("?", 1)[0]
        note = scope.get("servoir.access", {})  # what the access log shows
        note["protocol"] = "v2_rest"
        try:
            route = rest_routes.match(method, path)
            if route is None:
                await self._error(send, 404, f"Not found: {scope['path']}")
                return
            note["model"] = route.model
            if method == "POST":
                body = await asgi.read_body(scope, receive, self._rest.max_body_bytes)
                reply = await self._gone.run(receive, self._handle(route, scope, body, note))
            else:
                reply = await self._handle(route, scope, b"", note)
        except ServingError as e:
            await self._error(send, http_status(e.code), e.message)
        except rest_routes.MethodNotAllowed as e:
            await self._error(send, 405, f"{method} is not allowed here; use {e.allowed}")
        except asgi.BodyTooLarge as e:
            await self._error(send, 413, str(e))
        except asgi.BadEncoding as e:
            await self._error(send, 400, str(e))
        except asgi.ClientGone:
            return
        except Exception:
            log.exception("unhandled error for %s %s", method, scope["path"])
            await self._error(send, 500, "Internal error")
        else:
            await asgi.respond(send, 200, reply.body, reply.headers + self._cors)

    async def _error(self, send: asgi.Send, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        await asgi.respond(send, status, body, asgi.JSON_HEADERS + self._cors)

    async def _handle(
        self, route: rest_routes.Route, scope: asgi.Scope, body: bytes, note: dict[str, str]
    ) -> _Reply:
        api = self._api
        kind = route.kind
        if kind == "infer":
            header = asgi.header(scope, HEADER_LENGTH)
            request, fmt = decode_infer(body, header, route.model, parse_version(route.version))
            response = await api.infer(request)
            note["version"] = response.model_version
            return _Reply(*encode_infer(response, fmt))
        if kind == "live":
            return _Reply(b"", [])  # answering at all is the liveness signal
        if kind == "ready":
            if not api.server_ready():
                raise ServingError(Code.UNAVAILABLE, "the server is not ready")
            return _Reply(b"", [])
        if kind == "model_ready":
            return self._model_ready(route)
        if kind == "model_metadata":
            meta = api.model_metadata(route.model, route.version)
            return _Reply(_json(_metadata_doc(meta)))
        if kind == "server_metadata":
            name, version, extensions = api.server_metadata()
            return _Reply(_json({"name": name, "version": version, "extensions": extensions}))
        return await self._repository(route, body)

    def _model_ready(self, route: rest_routes.Route) -> _Reply:
        if self._api.model_ready(route.model, route.version):
            return _Reply(b"", [])
        version = parse_version(route.version)
        not_ready = self._api.not_ready(route.model, version)
        if not_ready is not None:
            raise not_ready
        shown = f" version {version}" if version is not None else ""
        raise ServingError(Code.NOT_FOUND, f"unknown model '{route.model}'{shown}")

    async def _repository(self, route: rest_routes.Route, body: bytes) -> _Reply:
        self._api.require_model_control()  # a disabled extension says so whatever the body
        doc = _optional_object(body)
        if route.kind == "repository_index":
            ready = doc.get("ready", False)
            if not isinstance(ready, bool):
                raise invalid_argument("'ready' must be true or false")
            entries = self._api.repository_index(ready)
            return _Reply(_json([_index_entry(e) for e in entries]))
        parameters = doc.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise invalid_argument("'parameters' must be a JSON object")
        if route.kind == "load":
            await self._api.load_model(route.model, parameters)
        else:
            await self._api.unload_model(route.model)
        return _Reply(b"{}")


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc)


def _optional_object(body: bytes) -> dict[str, Any]:
    """The repository endpoints' body: tritonclient sends none for the index."""
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise invalid_argument(f"the request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise invalid_argument("the request body must be a JSON object")
    return doc


def _metadata_doc(meta: ModelMetadata) -> dict[str, Any]:
    def tensors(items: tuple[TensorMetadata, ...]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in items]

    return {
        "name": meta.name,
        "versions": meta.versions,
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


def _index_entry(entry: RepositoryEntry) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": entry.name}
    if entry.version is not None:
        doc["version"] = str(entry.version)
    doc["state"] = entry.state
    doc["reason"] = entry.reason
    return doc
