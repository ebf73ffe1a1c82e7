"""KServe V2 over REST against a real server, with tritonclient.http (and httpx where
tritonclient cannot send the request under test)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
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
    return build_repo(tmp_path_factory.mktemp("v2rest"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    running = start_server(repo, model_control=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def triton(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.rest_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest_url, timeout=30) as c:
        yield c


def failure(call: object, *args: object, **kwargs: object) -> tuple[str, str]:
    """(HTTP status, message) of a tritonclient call that must fail."""
    with pytest.raises(InferenceServerException) as e:
        call(*args, **kwargs)  # type: ignore[operator]
    return str(e.value.status()), str(e.value.message())


def mlp_input(
    binary: bool, rows: int = 2, seed: int = 0
) -> tuple[httpclient.InferInput, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((rows, 784)).astype(np.float32)
    infer_input = httpclient.InferInput("x", [rows, 784], "FP32")
    infer_input.set_data_from_numpy(x, binary_data=binary)
    return infer_input, x


# ---- health and metadata --------------------------------------------------------------------


def test_health(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("mlp")
    assert triton.is_model_ready("mlp", "1")
    assert not triton.is_model_ready("mlp", "7")
    assert not triton.is_model_ready("nope")


def test_model_ready_status_codes(http: httpx.Client) -> None:
    assert http.get("/v2/models/mlp/ready").status_code == 200
    r = http.get("/v2/models/nope/ready")
    assert (r.status_code, r.json()) == (404, {"error": "unknown model 'nope'"})
    r = http.get("/v2/models/mlp/versions/7/ready")  # no such version: unknown, not unready
    assert (r.status_code, r.json()) == (404, {"error": "unknown model 'mlp' version 7"})


def test_server_metadata(triton: httpclient.InferenceServerClient) -> None:
    # Without --enable_model_control the repository extension is not offered.
    assert triton.get_server_metadata() == {
        "name": "servoir",
        "version": __version__,
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.get_model_metadata("mlp") == {
        "name": "mlp",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert triton.get_model_metadata("mlp", "1")["name"] == "mlp"
    scale = triton.get_model_metadata("scale")
    assert [(o["name"], o["shape"]) for o in scale["outputs"]] == [("y", [-1, 2]), ("total", [-1])]
    types = triton.get_model_metadata("types")
    assert {i["datatype"] for i in types["inputs"]} == set(DTYPES)


# ---- inference ------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
def test_infer_equals_onnxruntime(
    triton: httpclient.InferenceServerClient, repo: Path, binary: bool
) -> None:
    infer_input, x = mlp_input(binary)
    output = httpclient.InferRequestedOutput("logits", binary_data=binary)
    result = triton.infer("mlp", [infer_input], outputs=[output], request_id="req-1")
    response = result.get_response()
    assert response["model_name"] == "mlp"
    assert response["model_version"] == "2"
    assert response["id"] == "req-1"
    expected = run_onnx(repo / "mlp" / "2", {"x": x})["logits"]
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)


@pytest.mark.parametrize("algorithm", ["deflate", "gzip"])
def test_compressed_requests(
    triton: httpclient.InferenceServerClient, repo: Path, algorithm: str
) -> None:
    infer_input, x = mlp_input(True)
    result = triton.infer("mlp", [infer_input], request_compression_algorithm=algorithm)
    expected = run_onnx(repo / "mlp" / "2", {"x": x})["logits"]
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)


def test_raw_deflate_and_bad_deflate(http: httpx.Client) -> None:
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    ).encode()
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # deflate without zlib's header
    deflated = raw.compress(body) + raw.flush()
    headers = {"Content-Encoding": "deflate"}
    r = http.post("/v2/models/scale/infer", content=deflated, headers=headers)
    assert r.status_code == 200, r.text
    r = http.post("/v2/models/scale/infer", content=b"not deflate", headers=headers)
    assert (r.status_code, r.json()) == (400, {"error": "Request body is not valid deflate data"})


def test_explicit_version(triton: httpclient.InferenceServerClient, repo: Path) -> None:
    infer_input, x = mlp_input(True)
    result = triton.infer("mlp", [infer_input], model_version="1")
    assert result.get_response()["model_version"] == "1"
    expected = run_onnx(repo / "mlp" / "1", {"x": x})["logits"]
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)
    assert not np.array_equal(expected, run_onnx(repo / "mlp" / "2", {"x": x})["logits"])


@pytest.mark.parametrize("binary", [False, True])
def test_every_datatype(triton: httpclient.InferenceServerClient, repo: Path, binary: bool) -> None:
    feeds = {input_name(d): sample(d, (2, 3), seed=i) for i, d in enumerate(DTYPES)}
    inputs = []
    for datatype in DTYPES:
        infer_input = httpclient.InferInput(input_name(datatype), [2, 3], datatype)
        inputs.append(infer_input.set_data_from_numpy(feeds[input_name(datatype)], binary))
    outputs = [httpclient.InferRequestedOutput(output_name(d), binary_data=binary) for d in DTYPES]
    result = triton.infer("types", inputs, outputs=outputs)
    expected = run_onnx(repo / "types" / "1", feeds)
    for datatype in DTYPES:
        got = result.as_numpy(output_name(datatype))
        want = expected[output_name(datatype)]
        assert result.get_output(output_name(datatype))["datatype"] == datatype
        assert got.shape == (2, 3)
        if datatype == "BYTES" and not binary:
            # JSON carries BYTES as text; tritonclient hands back str elements.
            want = np.vectorize(lambda b: b.decode(), otypes=[object])(want)
        else:
            assert got.dtype == want.dtype
        assert got.tolist() == want.tolist()


def test_requested_outputs_mixing_binary_and_json(
    triton: httpclient.InferenceServerClient,
) -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    infer_input = httpclient.InferInput("x", [2, 2], "FP32").set_data_from_numpy(x)
    outputs = [
        httpclient.InferRequestedOutput("total", binary_data=False),
        httpclient.InferRequestedOutput("y", binary_data=True),
    ]
    result = triton.infer("scale", [infer_input], outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["total", "y"]
    assert result.get_output("total")["data"] == [3.0, 7.0]
    assert result.get_output("y")["parameters"] == {"binary_data_size": 16}
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)
    only_total = triton.infer("scale", [infer_input], outputs=outputs[:1])
    assert [o["name"] for o in only_total.get_response()["outputs"]] == ["total"]


def test_nested_json_data_and_json_response(http: httpx.Client) -> None:
    body = {
        "id": "n1",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}],
    }
    r = http.post("/v2/models/scale/versions/1/infer", json=body)
    assert r.status_code == 200
    assert "inference-header-content-length" not in r.headers
    assert r.json() == {
        "model_name": "scale",
        "model_version": "1",
        "id": "n1",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [2.0, 4.0, 6.0, 8.0]},
            {"name": "total", "datatype": "FP32", "shape": [2], "data": [3.0, 7.0]},
        ],
    }


# One binary FP32 input x [1, 2] for the scale model.
BINARY_X = {"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}


def post_binary(
    http: httpx.Client, doc: dict[str, object], raw: bytes, length: int | None = None
) -> httpx.Response:
    header = json.dumps(doc).encode()
    declared = len(header) if length is None else length
    return http.post(
        "/v2/models/scale/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(declared)},
    )


def test_binary_response_layout(http: httpx.Client) -> None:
    x = np.array([[1.0, 2.0]], np.float32)
    outputs = [{"name": "y", "parameters": {"binary_data": True}}]
    r = post_binary(http, {"inputs": [BINARY_X], "outputs": outputs}, x.tobytes())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:length])
    assert doc["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}
    ]
    assert r.content[length:] == (x * 2).tobytes()


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_model_is_404(triton: httpclient.InferenceServerClient) -> None:
    infer_input, _ = mlp_input(True)
    status, message = failure(triton.infer, "nope", [infer_input])
    assert status == "404"
    assert "nope" in message
    assert failure(triton.get_model_metadata, "nope")[0] == "404"
    assert failure(triton.get_model_metadata, "mlp", "7")[0] == "404"


def test_bad_inputs_are_400_with_precise_messages(
    triton: httpclient.InferenceServerClient,
) -> None:
    x = np.zeros((1, 784), np.float32)
    unknown = httpclient.InferInput("z", [1, 784], "FP32").set_data_from_numpy(x)
    assert failure(triton.infer, "mlp", [unknown]) == (
        "400",
        "unknown input 'z': the model's inputs are x",
    )
    wrong = httpclient.InferInput("x", [1, 784], "INT64")
    wrong.set_data_from_numpy(x.astype(np.int64))
    assert failure(triton.infer, "mlp", [wrong]) == (
        "400",
        "input 'x': the model expects datatype FP32 but the request has INT64",
    )
    short = httpclient.InferInput("x", [1, 784], "FP32")
    short.set_data_from_numpy(x, binary_data=False)
    short._data = [1.0, 2.0, 3.0]  # what a hand-written client can send
    assert failure(triton.infer, "mlp", [short]) == (
        "400",
        "input 'x': shape [1,784] needs 784 elements but data has 3",
    )
    infer_input, _ = mlp_input(True)
    bad_output = httpclient.InferRequestedOutput("nope")
    status, message = failure(triton.infer, "mlp", [infer_input], outputs=[bad_output])
    assert status == "400"
    assert message.startswith("output tensor alias not found in signature: nope")
    # shapes are checked against the signature by the service
    narrow = httpclient.InferInput("x", [1, 3], "FP32")
    narrow.set_data_from_numpy(np.zeros((1, 3), np.float32))
    assert failure(triton.infer, "mlp", [narrow]) == (
        "400",
        "input 'x' expects shape [-1,784] but got [1,3]",
    )
    assert triton.is_server_live() and triton.is_model_ready("mlp")


def test_timeout_parameter_is_a_deadline(triton: httpclient.InferenceServerClient) -> None:
    infer_input, _ = mlp_input(True)
    # Triton's timeout parameter is in microseconds: 1 us passes before the model can run.
    assert failure(triton.infer, "mlp", [infer_input], timeout=1) == ("504", "Deadline exceeded")
    assert triton.infer("mlp", [infer_input], timeout=30_000_000).as_numpy("logits") is not None


def test_binary_framing_errors_are_400(http: httpx.Client) -> None:
    doc: dict[str, object] = {"inputs": [BINARY_X]}
    size = len(json.dumps(doc)) + 8
    r = post_binary(http, doc, b"\0" * 8, length=size + 10)
    assert (r.status_code, r.json()) == (
        400,
        {
            "error": f"Inference-Header-Content-Length ({size + 10}) is larger than the "
            f"request body ({size} bytes)"
        },
    )
    r = post_binary(http, doc, b"\0" * 12)
    assert (r.status_code, r.json()["error"]) == (
        400,
        "the inputs' binary_data_size add up to 8 bytes but the body carries 12 bytes "
        "after the JSON header",
    )
    r = http.post("/v2/models/scale/infer", content=b"{not json")
    assert r.status_code == 400
    assert r.json()["error"].startswith("the inference request is not valid JSON")
    # and the server goes on serving
    assert post_binary(http, doc, b"\0" * 8).status_code == 200


def test_unknown_paths_and_methods(http: httpx.Client) -> None:
    r = http.get("/v2/models/mlp/config")
    assert r.status_code == 404 and "error" in r.json()
    r = http.get("/v2/models/mlp/infer")
    assert (r.status_code, r.json()) == (405, {"error": "GET is not allowed here; use POST"})
    r = http.get("/v2/models/mlp/versions/one")
    assert (r.status_code, r.json()) == (
        400,
        {"error": "model version must be a non-negative integer, got 'one'"},
    )


def test_model_control_is_off_by_default(
    triton: httpclient.InferenceServerClient, http: httpx.Client
) -> None:
    expected = ("403", "model control is disabled; start the server with --enable_model_control")
    assert failure(triton.get_model_repository_index) == expected
    assert failure(triton.load_model, "scale") == expected
    assert failure(triton.unload_model, "scale") == expected
    r = http.post("/v2/repository/models/scale/unload", content=b"not json")
    assert (r.status_code, r.json()["error"]) == (403, expected[1])
    assert triton.is_model_ready("scale")


def test_not_ready_server_answers_503(repo: Path) -> None:
    running = start_server(repo, model_control=False, broken=True)
    client = httpclient.InferenceServerClient(running.rest_url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready("broken")
        assert client.is_model_ready("mlp")
        r = httpx.get(running.rest_url + "/v2/health/ready")
        assert (r.status_code, r.json()) == (503, {"error": "the server is not ready"})
        r = httpx.get(running.rest_url + "/v2/models/broken/ready")
        assert (r.status_code, r.json()) == (503, {"error": "model 'broken' is not ready"})
        # A known model that is not ready is 503 for inference and metadata too, not 404.
        infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
        for path, body in [("/v2/models/broken/infer", infer), ("/v2/models/broken", None)]:
            r = httpx.request("POST" if body else "GET", running.rest_url + path, json=body)
            assert (r.status_code, r.json()) == (503, {"error": "model 'broken' is not ready"})
    finally:
        client.close()
        running.stop()


# ---- model repository extension -------------------------------------------------------------


@pytest.fixture(scope="module")
def controlled_server(repo: Path) -> Iterator[RunningServer]:
    running = start_server(repo, model_control=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def controlled(controlled_server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(controlled_server.rest_url.removeprefix("http://"))
    yield client
    client.close()


def test_repository_index_load_and_unload(
    controlled: httpclient.InferenceServerClient, controlled_server: RunningServer
) -> None:
    assert "model_repository" in controlled.get_server_metadata()["extensions"]
    index = controlled.get_model_repository_index()
    assert {(e["name"], e.get("version"), e["state"]) for e in index} >= {
        ("mlp", "1", "READY"),
        ("mlp", "2", "READY"),
        ("scale", "1", "READY"),
    }
    controlled.unload_model("scale")
    assert not controlled.is_model_ready("scale")
    # Unloaded but still in the repository: not ready (503), not unknown (404).
    assert failure(controlled.get_model_metadata, "scale") == (
        "503",
        "model 'scale' is not ready",
    )
    r = httpx.get(controlled_server.rest_url + "/v2/models/scale/ready")
    assert r.status_code == 503
    states = [e["state"] for e in controlled.get_model_repository_index() if e["name"] == "scale"]
    assert states and "READY" not in states  # still listed, as not ready
    url = controlled_server.rest_url + "/v2/repository/index"
    ready_only = httpx.post(url, json={"ready": True}).json()
    assert "scale" not in {e["name"] for e in ready_only} and ready_only
    controlled.load_model("scale")
    assert controlled.is_model_ready("scale")
    controlled.unload_model("scale")  # a second unload lists version 1 once, not twice
    assert [
        e.get("version") for e in controlled.get_model_repository_index() if e["name"] == "scale"
    ] == ["1"]
    controlled.load_model("scale")


def test_repository_errors(controlled: httpclient.InferenceServerClient) -> None:
    status, message = failure(controlled.load_model, "nope")
    assert status == "404" and "nope" in message
    status, message = failure(controlled.load_model, "scale", config="{}")
    assert status == "400"
    assert message == (
        "loading model 'scale' with config is not supported: "
        "models load from the model repository only"
    )
