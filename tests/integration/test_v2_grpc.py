"""KServe V2 over gRPC (inference.GRPCInferenceService) against a real server, with
tritonclient.grpc and, for typed contents and raw status codes, tritonclient's own stubs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from servoir import __version__
from tests.integration.harness import RunningServer
from tests.v2_models import (
    DTYPES,
    build_repo,
    input_name,
    output_name,
    run_onnx,
    sample,
    start_server,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("v2grpc"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    running = start_server(repo, model_control=False)
    yield running
    running.stop()


def address(server: RunningServer) -> str:
    assert server.server is not None
    return f"127.0.0.1:{server.server.grpc_port}"


@pytest.fixture(scope="module")
def triton(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(address(server))
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(address(server)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def failure(call: object, *args: object, **kwargs: object) -> tuple[str, str]:
    """(gRPC status, message) of a tritonclient call that must fail."""
    with pytest.raises(InferenceServerException) as e:
        call(*args, **kwargs)  # type: ignore[operator]
    return str(e.value.status()), str(e.value.message())


def rpc_error(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call(request)  # type: ignore[operator]
    return e.value


def mlp_input(rows: int = 2) -> tuple[grpcclient.InferInput, np.ndarray]:
    x = np.random.default_rng(rows).standard_normal((rows, 784)).astype(np.float32)
    return grpcclient.InferInput("x", [rows, 784], "FP32").set_data_from_numpy(x), x


# ---- health and metadata --------------------------------------------------------------------


def test_health(triton: grpcclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("mlp")
    assert triton.is_model_ready("mlp", "1")
    assert not triton.is_model_ready("mlp", "7")
    assert not triton.is_model_ready("nope")  # as Triton: not ready rather than an error


def test_server_metadata(triton: grpcclient.InferenceServerClient) -> None:
    meta = triton.get_server_metadata(as_json=True)
    assert meta == {"name": "servoir", "version": __version__, "extensions": ["binary_tensor_data"]}


def test_model_metadata(triton: grpcclient.InferenceServerClient) -> None:
    meta = triton.get_model_metadata("mlp", as_json=True)
    assert meta == {
        "name": "mlp",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        # protobuf's JSON writes int64 as strings
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "784"]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}],
    }
    status, message = failure(triton.get_model_metadata, "nope")
    assert status == "StatusCode.NOT_FOUND" and "nope" in message


# ---- inference ------------------------------------------------------------------------------


def test_infer_equals_onnxruntime(triton: grpcclient.InferenceServerClient, repo: Path) -> None:
    infer_input, x = mlp_input()
    result = triton.infer("mlp", [infer_input], request_id="g1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("mlp", "2", "g1")
    assert len(response.raw_output_contents) == 1
    expected = run_onnx(repo / "mlp" / "2", {"x": x})["logits"]
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)
    older = triton.infer("mlp", [infer_input], model_version="1")
    assert older.get_response().model_version == "1"
    expected = run_onnx(repo / "mlp" / "1", {"x": x})["logits"]
    np.testing.assert_array_equal(older.as_numpy("logits"), expected)


def test_every_datatype(triton: grpcclient.InferenceServerClient, repo: Path) -> None:
    feeds = {input_name(d): sample(d, (3, 2), seed=i) for i, d in enumerate(DTYPES)}
    inputs = [
        grpcclient.InferInput(input_name(d), [3, 2], d).set_data_from_numpy(feeds[input_name(d)])
        for d in DTYPES
    ]
    result = triton.infer("types", inputs)
    expected = run_onnx(repo / "types" / "1", feeds)
    for datatype in DTYPES:
        got = result.as_numpy(output_name(datatype))
        want = expected[output_name(datatype)]
        assert result.get_output(output_name(datatype)).datatype == datatype
        assert got.dtype == want.dtype and got.shape == (3, 2)
        assert got.tolist() == want.tolist()


def test_requested_outputs(triton: grpcclient.InferenceServerClient) -> None:
    x = np.array([[1.0, 2.0]], np.float32)
    infer_input = grpcclient.InferInput("x", [1, 2], "FP32").set_data_from_numpy(x)
    result = triton.infer(
        "scale", [infer_input], outputs=[grpcclient.InferRequestedOutput("total")]
    )
    assert [o.name for o in result.get_response().outputs] == ["total"]
    np.testing.assert_array_equal(result.as_numpy("total"), [3.0])


def test_typed_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="scale", model_version="1")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    tensor.contents.fp32_contents.extend([1, 2, 3, 4])
    response = stub.ModelInfer(request)
    y = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert [o.name for o in response.outputs] == ["y", "total"]
    assert list(response.outputs[0].shape) == [2, 2]
    assert y.tolist() == [2, 4, 6, 8]


# ---- errors ---------------------------------------------------------------------------------


def test_bad_requests_are_invalid_argument(triton: grpcclient.InferenceServerClient) -> None:
    x = np.zeros((1, 784), np.float32)
    unknown = grpcclient.InferInput("z", [1, 784], "FP32").set_data_from_numpy(x)
    assert failure(triton.infer, "mlp", [unknown]) == (
        "StatusCode.INVALID_ARGUMENT",
        "unknown input 'z': the model's inputs are x",
    )
    wrong = grpcclient.InferInput("x", [1, 784], "INT64").set_data_from_numpy(x.astype(np.int64))
    assert failure(triton.infer, "mlp", [wrong]) == (
        "StatusCode.INVALID_ARGUMENT",
        "input 'x': the model expects datatype FP32 but the request has INT64",
    )
    infer_input, _ = mlp_input(1)
    status, message = failure(
        triton.infer, "mlp", [infer_input], outputs=[grpcclient.InferRequestedOutput("nope")]
    )
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message.startswith("output tensor alias not found in signature: nope")
    status, message = failure(triton.infer, "nope", [infer_input])
    assert status == "StatusCode.NOT_FOUND" and "nope" in message
    assert triton.is_server_live() and triton.is_model_ready("mlp")


def test_timeout_parameter_is_a_deadline(triton: grpcclient.InferenceServerClient) -> None:
    infer_input, _ = mlp_input(1)
    # Triton's timeout parameter is in microseconds: 1 us passes before the model can run.
    status, message = failure(triton.infer, "mlp", [infer_input], timeout=1)
    assert (status, message) == ("StatusCode.DEADLINE_EXCEEDED", "Deadline exceeded")
    assert triton.infer("mlp", [infer_input], client_timeout=30).as_numpy("logits") is not None


def test_raw_size_mismatch(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 784])
    request.raw_input_contents.append(b"\0" * 12)
    error = rpc_error(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "input 'x': shape [1,784] with datatype FP32 needs 3136 bytes but the data has 12"
    )
    request = service_pb2.ModelInferRequest(model_name="mlp", model_version="v1")
    error = rpc_error(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "model version must be a non-negative integer, got 'v1'"


def test_unimplemented_rpcs(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    error = rpc_error(stub.ModelConfig, service_pb2.ModelConfigRequest(name="mlp"))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "ModelConfig is not supported (use ModelMetadata)"
    error = rpc_error(stub.ModelStatistics, service_pb2.ModelStatisticsRequest(name="mlp"))
    assert error.details() == "ModelStatistics is not supported (use the Prometheus metrics)"
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ModelStreamInfer(iter([service_pb2.ModelInferRequest(model_name="mlp")])))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == "ModelStreamInfer is not supported (use ModelInfer)"


def test_model_control_is_off_by_default(triton: grpcclient.InferenceServerClient) -> None:
    expected = (
        "StatusCode.PERMISSION_DENIED",
        "model control is disabled; start the server with --enable_model_control",
    )
    assert failure(triton.get_model_repository_index) == expected
    assert failure(triton.load_model, "scale") == expected
    assert failure(triton.unload_model, "scale") == expected
    assert triton.is_model_ready("scale")


def test_not_ready_server(repo: Path) -> None:
    running = start_server(repo, model_control=False, broken=True)
    client = grpcclient.InferenceServerClient(address(running))
    try:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready("broken")
        assert client.is_model_ready("mlp")
        x = grpcclient.InferInput("x", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, np.float32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("broken", [x])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert caught.value.message() == "model 'broken' is not ready"
    finally:
        client.close()
        running.stop()


# ---- model repository extension -------------------------------------------------------------


@pytest.fixture(scope="module")
def controlled(repo: Path) -> Iterator[grpcclient.InferenceServerClient]:
    running = start_server(repo, model_control=True)
    client = grpcclient.InferenceServerClient(address(running))
    yield client
    client.close()
    running.stop()


def test_repository_index_load_and_unload(controlled: grpcclient.InferenceServerClient) -> None:
    meta = controlled.get_server_metadata(as_json=True)
    assert "model_repository" in meta["extensions"]
    index = controlled.get_model_repository_index().models
    assert {(m.name, m.version, m.state) for m in index} >= {
        ("mlp", "1", "READY"),
        ("mlp", "2", "READY"),
        ("types", "1", "READY"),
    }
    controlled.unload_model("types")
    assert not controlled.is_model_ready("types")
    ready = {m.name for m in controlled.get_model_repository_index().models if m.state == "READY"}
    assert "types" not in ready and "mlp" in ready
    controlled.load_model("types")
    assert controlled.is_model_ready("types")
    status, _ = failure(controlled.unload_model, "nope")
    assert status == "StatusCode.NOT_FOUND"
