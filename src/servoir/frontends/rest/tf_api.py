"""TensorFlow Serving's REST API (contract section 1): decode -> service -> encode."""

from __future__ import annotations

import logging
import time

import orjson

from servoir.errors import Code, ServingError
from servoir.frontends.rest import asgi, routes
from servoir.frontends.rest.app import CORS_HEADERS, RestOptions
from servoir.frontends.rest.json_body import parse_json_object
from servoir.frontends.rest.tf_decode import decode_inputs, read_predict_body
from servoir.frontends.rest.tf_encode import encode_error, encode_predict_response
from servoir.frontends.rest.tf_examples import (
    encode_classify_response,
    encode_regress_response,
    read_examples_body,
)
from servoir.frontends.rest.tf_status import metadata_json, status_entries, status_json
from servoir.inference.api import ExampleRequest
from servoir.metrics import Metrics
from servoir.service import Service, SignatureNotFound
from servoir.status import http_status
from servoir.types import ModelSpec, PredictRequest

log = logging.getLogger("servoir.rest")


class TfRestApi:
    """The /v1 mount."""

    def __init__(
        self, service: Service, options: RestOptions, metrics: Metrics | None = None
    ) -> None:
        self._service = service
        self._options = options
        self._metrics = metrics
        self._headers = asgi.JSON_HEADERS + (CORS_HEADERS if options.enable_cors else [])
        self._gone = asgi.GoneWatch()

    def matches(self, path: str) -> bool:
        return path[:4].lower() == "/v1/"  # TF Serving matches (?i)/v1/.*

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        method: str = scope["method"]
        # Routes match the raw path, as TF Serving does: an escaped "/" stays in the name.
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        started = time.perf_counter()
        note = scope.get("servoir.access", {})
        note["protocol"] = "tf_rest"
        route: routes.Route | None = None
        code = Code.OK
        try:
            route = routes.match(method, path)
            note["model"] = route.model
            if method == "POST":
                body = await asgi.read_body(scope, receive, self._options.max_body_bytes)
                payload = await self._gone.run(receive, self.handle(route, body, note))
            else:
                payload = await self.handle(route, b"", note)
        except ServingError as e:
            code = e.code
            await self._reply(send, http_status(e.code), encode_error(e.message))
        except asgi.BodyTooLarge as e:
            code = Code.RESOURCE_EXHAUSTED
            await self._reply(send, 413, encode_error(str(e)))
        except asgi.BadEncoding as e:
            code = Code.INVALID_ARGUMENT
            await self._reply(send, 400, encode_error(str(e)))
        except asgi.ClientGone:
            code = Code.CANCELLED
            return
        except Exception:
            code = Code.INTERNAL
            log.exception("unhandled error for %s %s", method, scope["path"])
            await self._reply(send, 500, encode_error("Internal error"))
        else:
            await self._reply(send, 200, payload)
        finally:
            if self._metrics is not None and route is not None and route.model:
                api = route.kind if method == "POST" else ""
                elapsed = time.perf_counter() - started
                self._metrics.tf_request(route.model, code.name, api, "REST", elapsed)

    async def _reply(self, send: asgi.Send, status: int, body: bytes) -> None:
        await asgi.respond(send, status, body, self._headers)

    async def handle(self, route: routes.Route, body: bytes, note: dict[str, str]) -> bytes:
        """The JSON body of a 200 answer; every failure is raised as a ServingError."""
        if route.kind == "predict":
            return await self._predict(route, body, note)
        if route.kind in ("classify", "regress"):
            return await self._examples(route, body, note)
        if route.kind == "status":
            return self._status(route)
        if route.kind == "metadata":
            spec = ModelSpec(route.model, route.version, route.label)
            return orjson.dumps(metadata_json(self._service.metadata(spec)))
        return self._list()

    async def _predict(self, route: routes.Route, body: bytes, note: dict[str, str]) -> bytes:
        # TF Serving's order: the JSON and its signature name first (a bad body is a 400 even
        # for an unknown model), then the model and signature, then the payload keys.
        parsed = read_predict_body(parse_json_object(body))
        spec = ModelSpec(route.model, route.version, route.label, parsed.signature_name)
        request = PredictRequest(
            spec,
            lambda signature: decode_inputs(parsed, signature, raw_body=body),
            deadline=time.monotonic() + self._options.timeout_s,
            protocol="tf_rest",
        )
        try:
            result = await self._service.predict(request)
        except SignatureNotFound as e:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f'Serving signature name: "{e.signature_name}" not found in signature def',
            ) from None
        note["version"] = str(result.version)
        return encode_predict_response(result.outputs, parsed.row_format)

    async def _examples(self, route: routes.Route, body: bytes, note: dict[str, str]) -> bytes:
        # Unlike predict, TF Serving reads the JSON first here: it needs no signature to
        # build tf.Examples, so a bad body is a 400 even for an unknown model.
        parsed = read_examples_body(parse_json_object(body))
        spec = ModelSpec(route.model, route.version, route.label, parsed.signature_name)
        request = ExampleRequest(
            spec,
            parsed.examples,
            deadline=time.monotonic() + self._options.timeout_s,
            protocol="tf_rest",
        )
        if route.kind == "classify":
            classified = await self._service.classify(request)
            note["version"] = str(classified.version)
            return encode_classify_response(classified)
        regressed = await self._service.regress(request)
        note["version"] = str(regressed.version)
        return encode_regress_response(regressed)

    def _status(self, route: routes.Route) -> bytes:
        version = route.version
        if route.label is not None:
            version = self._service.resolve_version(ModelSpec(route.model, label=route.label))
        return status_json(self._service.status(route.model, version))

    def _list(self) -> bytes:
        models = [
            {"name": name, "model_version_status": status_entries(self._service.statuses(name))}
            for name in self._service.model_names()
        ]
        return orjson.dumps({"models": models})
