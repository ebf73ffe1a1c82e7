"""TensorFlow Serving's REST API against a real server, with a real HTTP client."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from servoir.config.model_config import ModelConfig
from servoir.frontends.grpc.server import GrpcOptions
from servoir.frontends.rest.app import RestOptions
from servoir.server import ServerConfig
from servoir.sources.versions import All, Latest
from tests.integration.harness import RunningServer
from tests.models import copy_example, corrupt_version, mixed_model, scale_model


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    copy_example("mlp", root)
    scale_model(root / "scale" / "1", 2.0)
    mixed_model(root / "mixed" / "1")
    scale_model(root / "broken" / "1", 1.0)
    corrupt_version(root / "broken", 2)
    return root


def start(repo: Path, **rest: object) -> RunningServer:
    names = ["mlp", "scale", "mixed", "broken"]
    config = ServerConfig(
        # "broken" serves every version: with latest-1 only its broken version 2 is wanted.
        models=[
            ModelConfig(n, repo / n, policy=All() if n == "broken" else Latest()) for n in names
        ],
        rest_port=0,
        grpc=GrpcOptions(port=None),
        bind_address="127.0.0.1",
        rest=RestOptions(**rest),  # type: ignore[arg-type]
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
    )
    return RunningServer(config).start()


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    running = start(repo, max_body_bytes=1 << 20)
    yield running
    running.stop()


def error(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    return str(response.json()["error"])


# ---- status, metadata, listing ------------------------------------------------------------


def test_status_matches_tf_serving_text(client: httpx.Client) -> None:
    r = client.get("/v1/models/mlp")
    assert r.status_code == 200
    assert r.text == (
        '{\n "model_version_status": [\n  {\n   "version": "2",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}'
    )


def test_status_of_a_version(client: httpx.Client) -> None:
    r = client.get("/v1/models/mlp/versions/2")
    assert r.json()["model_version_status"][0]["version"] == "2"
    r = client.get("/v1/models/mlp/versions/1")
    assert (r.status_code, error(r)) == (404, "Could not find version 1 of model mlp")
    r = client.get("/v1/models/nope")
    assert (r.status_code, error(r)) == (404, "Could not find any versions of model nope")


def test_failed_version_is_reported_without_paths(client: httpx.Client, repo: Path) -> None:
    r = client.get("/v1/models/broken")
    assert r.status_code == 200
    statuses = {s["version"]: s for s in r.json()["model_version_status"]}
    assert statuses["2"]["state"] == "END"
    assert statuses["2"]["status"]["error_code"] == "INVALID_ARGUMENT"
    message = statuses["2"]["status"]["error_message"]
    assert "Failed to load version 2 of model broken" in message
    assert str(repo) not in message and "/" not in message.replace("N/A", "")
    # the model keeps serving the version that loaded
    assert statuses["1"]["state"] == "AVAILABLE"
    r = client.post("/v1/models/broken:predict", json={"instances": [[1.0, 2.0]]})
    assert r.status_code == 200


def test_metadata(client: httpx.Client) -> None:
    r = client.get("/v1/models/mlp/metadata")
    assert r.status_code == 200
    doc = r.json()
    assert doc["model_spec"] == {"name": "mlp", "signature_name": "", "version": "2"}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "784", "name": ""}],
            "unknown_rank": False,
        },
        "name": "x",
    }
    assert sig["outputs"]["logits"]["tensor_shape"]["dim"][1]["size"] == "10"
    assert sig["defaults"] == {}
    mixed = client.get("/v1/models/mixed/versions/1/metadata").json()
    inputs = mixed["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert {k: v["dtype"] for k, v in inputs.items()} == {
        "ids": "DT_INT64",
        "mask": "DT_BOOL",
        "tag": "DT_STRING",
    }


def test_list_models(client: httpx.Client) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"mlp", "scale", "mixed", "broken"}
    assert models["mlp"]["model_version_status"][0]["state"] == "AVAILABLE"


# ---- predict ------------------------------------------------------------------------------


def reference_mlp(x: np.ndarray, repo: Path, version: int = 2) -> np.ndarray:
    session = ort.InferenceSession(str(repo / "mlp" / str(version) / "model.onnx"))
    return np.asarray(session.run(None, {"x": x})[0])


def test_predict_row_format_matches_onnxruntime(client: httpx.Client, repo: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    r = client.post("/v1/models/mlp:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["predictions"], np.float32)
    np.testing.assert_allclose(got, reference_mlp(x, repo), rtol=1e-5, atol=1e-6)


def test_predict_columnar_and_explicit_version(client: httpx.Client, repo: Path) -> None:
    x = np.random.default_rng(1).standard_normal((2, 784)).astype(np.float32)
    body = {"signature_name": "serving_default", "inputs": {"x": x.tolist()}}
    r = client.post("/v1/models/mlp/versions/2:predict", json=body)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"], np.float32)
    np.testing.assert_allclose(got, reference_mlp(x, repo), rtol=1e-5, atol=1e-6)


def test_predict_several_outputs(client: httpx.Client) -> None:
    r = client.post("/v1/models/scale:predict", json={"instances": [[1.0, 2.0], [0.5, 0.25]]})
    assert r.json() == {
        "predictions": [{"y": [2.0, 4.0], "total": 3.0}, {"y": [1.0, 0.5], "total": 0.75}]
    }
    r = client.post("/v1/models/scale:predict", json={"inputs": [[1.0, 2.0]]})
    assert r.json() == {"outputs": {"y": [[2.0, 4.0]], "total": [3.0]}}


def test_predict_ints_bools_strings_and_b64(client: httpx.Client) -> None:
    body = {
        "instances": [
            {"ids": [1, 2, 3], "mask": [True, False, True], "tag": "first"},
            {"ids": [4, 5, 6], "mask": [True, True, True], "tag": {"b64": "c2Vjb25k"}},
        ]
    }
    r = client.post("/v1/models/mixed:predict", content=json.dumps(body))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "predictions": [
            {"kept": [1, 0, 3], "count": 2, "tag_bytes": {"b64": "Zmlyc3Q="}},
            {"kept": [4, 5, 6], "count": 3, "tag_bytes": {"b64": "c2Vjb25k"}},
        ]
    }


def test_bytes_that_are_not_utf8_are_refused_by_an_onnx_model(client: httpx.Client) -> None:
    # ONNX Runtime's string tensors take text: b"\xff" is refused, never silently altered.
    body = {"instances": [{"ids": [1], "mask": [True], "tag": {"b64": "/w=="}}]}
    r = client.post("/v1/models/mixed:predict", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == (
        "input 'tag' holds bytes that are not UTF-8; this model's string inputs "
        "(ONNX Runtime) take UTF-8 text only"
    )


def test_gzip_body(client: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"instances": [[1.0, 1.0]]}).encode())
    r = client.post("/v1/models/scale:predict", content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["total"] == 2.0


def test_cors_preflight(client: httpx.Client) -> None:
    r = client.options("/v1/models/mlp:predict", headers={"Origin": "https://example.com"})
    assert (r.status_code, r.content) == (200, b"")
    r = client.options("/v1/models/mlp:predict")
    assert (r.status_code, r.content) == (400, b"")


# ---- bad requests: precise 4xx, the server keeps serving -------------------------------------

X2 = [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": X2},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/mlp/versions/1:predict",
            {"instances": X2},
            404,
            "Servable not found for request: Specific(mlp, 1)",
        ),
        (
            "POST",
            "/v1/models/mlp/labels/canary:predict",
            {"instances": X2},
            400,
            "Unrecognized servable version label: canary",
        ),
        (
            "POST",
            "/v1/models/..:predict",
            {"instances": X2},
            404,
            "Servable not found for request: Latest(..)",
        ),
        (
            "POST",
            "/v1/models/a%2F..%2Fb:predict",
            {"instances": X2},
            404,
            "Servable not found for request: Latest(a/../b)",
        ),
        (
            "GET",
            "/v1/models/mlp:predict",
            None,
            400,
            "Malformed request: GET /v1/models/mlp:predict",
        ),
        (
            "GET",
            "/v1/models/mlp/versions/99999999999999999999",
            None,
            400,
            "Failed to convert version: 99999999999999999999 to numeric.",
        ),
        ("POST", "/v1/models/scale:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/scale:predict", b"{oops", 400, None),
        ("POST", "/v1/models/scale:predict", b"[1, 2]", 400, None),
        ("POST", "/v1/models/scale:predict", {"instances": X2, "inputs": X2}, 400, None),
        ("POST", "/v1/models/scale:predict", {"x": X2}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/scale:predict", {"instances": [[1.0, 2.0], [1.0]]}, 400, None),
        ("POST", "/v1/models/scale:predict", {"instances": [["a", "b"]]}, 400, None),
        ("POST", "/v1/models/scale:predict", {"instances": [{"q": [1.0, 2.0]}]}, 400, None),
        (
            "POST",
            "/v1/models/scale:predict",
            {"inputs": {"q": X2}},
            400,
            "Missing named input: x in 'inputs' object.",
        ),
        (
            "POST",
            "/v1/models/scale:predict",
            {"signature_name": "nope", "instances": X2},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        ("POST", "/v1/models/scale:predict", {"signature_name": 3, "instances": X2}, 400, None),
        # TF Serving's order: the JSON, then the model, then the signature, then the keys.
        ("POST", "/v1/models/nope:predict", b"", 400, "JSON Parse error: The document is empty"),
        (
            "POST",
            "/v1/models/mlp/labels/canary:predict",
            b"[1]",
            400,
            "JSON Value: [\n    1\n] Is not object",
        ),
        (
            "POST",
            "/v1/models/nope:predict",
            {"signature_name": 3, "instances": X2},
            400,
            None,
        ),
        (
            "POST",
            "/v1/models/nope:predict",
            {},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/scale:predict",
            {"signature_name": "nope", "instances": X2, "inputs": X2},
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/scale:predict",
            {"instances": [[1.0, 2.0, 3.0]]},
            400,
            "input 'x' expects shape [-1,2] but got [1,3]",
        ),
        (
            "POST",
            "/v1/models/mixed:predict",
            {"instances": [{"ids": [1.5], "mask": [True], "tag": "t"}]},
            400,
            None,
        ),
        (  # inputs that pass the signature but not the graph: a 400 in the model's words
            "POST",
            "/v1/models/mixed:predict",
            {"inputs": {"ids": [[1, 2]], "mask": [[True, False, True]], "tag": ["a"]}},
            400,
            "model execution failed: Mul node: Attempting to broadcast an axis by a dimension "
            "other than 1. 2 by 3",
        ),
        ("POST", "/v1/models/scale:predict", b"[" * 100_000, 400, None),
        (
            "POST",
            "/v1/models/scale:predict",
            b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            400,
            None,
        ),
    ],
)
def test_bad_requests(
    client: httpx.Client,
    method: str,
    path: str,
    body: object,
    status: int,
    message: str | None,
) -> None:
    content = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
    r = client.request(method, path, content=content)
    assert r.status_code == status, r.text
    text = error(r)
    if message is not None:
        assert text == message
    assert "Traceback" not in text and "/tmp" not in text
    # the server is still up and other models keep serving
    ok = client.post("/v1/models/scale:predict", json={"instances": X2})
    assert ok.status_code == 200


def test_classify_on_an_onnx_model_is_a_clear_error(client: httpx.Client) -> None:
    r = client.post("/v1/models/mlp:classify", json={"examples": [{"x": 1.0}]})
    assert r.status_code == 501
    assert "Classify is not supported by model mlp" in error(r)


def test_unknown_path_is_404(client: httpx.Client) -> None:
    r = client.get("/nothing/here")
    assert r.status_code == 404


def test_body_limit_answers_413_before_reading(client: httpx.Client) -> None:
    big = b'{"instances": [' + b"1.0," * 400_000 + b"1.0]}"
    r = client.post("/v1/models/scale:predict", content=big)
    assert r.status_code == 413
    assert "limit" in error(r)
    # a gzip body that inflates past the limit is refused too
    r = client.post(
        "/v1/models/scale:predict",
        content=gzip.compress(big),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 413


def test_timeout_answers_504(repo: Path) -> None:
    running = start(repo, timeout_s=0.0)
    try:
        r = httpx.post(running.rest_url + "/v1/models/scale:predict", json={"instances": X2})
        assert r.status_code == 504
        assert error(r) == "Deadline exceeded"
    finally:
        running.stop()


def test_answers_carry_their_length(client: httpx.Client) -> None:
    # As TF Serving's answers: a Content-Length, not chunked transfer encoding.
    for r in (
        client.get("/v1/models/scale"),
        client.post("/v1/models/scale:predict", json={"instances": X2}),
        client.post("/v1/models/nope:predict", json={"instances": X2}),
    ):
        assert r.headers["content-length"] == str(len(r.content))
        assert "transfer-encoding" not in r.headers
