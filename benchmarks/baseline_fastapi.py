"""The hand-written baseline: the server a competent engineer writes in an afternoon.

FastAPI + uvicorn (httptools, uvloop) + orjson + onnxruntime, no pydantic models:
read the body, orjson.loads, np.asarray, session.run, orjson response. onnxruntime is set
up as docs/perf-facts recommend for small models on 2 cores: one intra-op thread, no
spinning. It serves the highest version under --model_base_path.

With --grpc_port it also answers TF Serving's PredictionService/Predict on that port, from
the same event loop and session: a bare grpc.aio handler (the input from tensor_content,
the output in float_val as TF Serving answers by default), no checks, no metrics.

    python benchmarks/baseline_fastapi.py --port=8501 [--grpc_port=8500] \
        --model_name=mlp --model_base_path=examples/models/mlp
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response


def make_session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def latest_version(model_base_path: Path) -> int:
    versions = [int(p.name) for p in model_base_path.iterdir() if p.name.isdigit()]
    if not versions:
        raise SystemExit(f"no numeric version directories under {model_base_path}")
    return max(versions)


def json_response(payload: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code, media_type="application/json")


def grpc_predict_handler(
    session: ort.InferenceSession, model_name: str, version: int
) -> grpc.GenericRpcHandler:
    from servoir.protos.tensorflow.core.framework import types_pb2
    from servoir.protos.tensorflow_serving.apis import predict_pb2

    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    async def predict(request: Any, context: Any) -> Any:
        tensor = request.inputs[input_name]
        shape = [d.size for d in tensor.tensor_shape.dim]
        x = np.frombuffer(tensor.tensor_content, np.float32).reshape(shape)
        (y,) = session.run(None, {input_name: x})
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model_name
        response.model_spec.version.value = version
        response.model_spec.signature_name = "serving_default"
        out = response.outputs[output_name]
        out.dtype = types_pb2.DT_FLOAT
        for size in y.shape:
            out.tensor_shape.dim.add(size=size)
        out.float_val.extend(y.ravel().tolist())
        return response

    handler = grpc.unary_unary_rpc_method_handler(
        predict,
        request_deserializer=predict_pb2.PredictRequest.FromString,
        response_serializer=predict_pb2.PredictResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": handler}
    )


def create_app(model_name: str, model_base_path: Path, grpc_port: int = 0) -> FastAPI:
    version = latest_version(model_base_path)
    session = make_session(model_base_path / str(version) / "model.onnx")
    input_name = session.get_inputs()[0].name
    status = {"model_version_status": [{"version": str(version), "state": "AVAILABLE"}]}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not grpc_port:
            yield
            return
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc_predict_handler(session, model_name, version),))
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        yield
        await server.stop(None)

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get(f"/v1/models/{model_name}")
    async def model_status() -> Response:
        return json_response(status)

    @app.post(f"/v1/models/{model_name}:predict")
    async def predict(request: Request) -> Response:
        try:
            instances = orjson.loads(await request.body())["instances"]
            x = np.asarray(instances, dtype=np.float32)
            (logits,) = session.run(None, {input_name: x})
        except Exception as exc:  # bad JSON, no "instances", wrong shape (onnxruntime's own)
            return json_response({"error": str(exc)}, 400)
        return json_response({"predictions": logits.tolist()})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--grpc_port", type=int, default=0, help="0: no gRPC")
    parser.add_argument("--model_name", default="mlp")
    parser.add_argument("--model_base_path", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_name, args.model_base_path, args.grpc_port),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
