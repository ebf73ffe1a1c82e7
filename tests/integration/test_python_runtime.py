"""Python models (model.py) against a real server: written here, served over REST and gRPC
(official client); broken ones end with a clear error and the server keeps serving."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from servoir.config.model_config import ModelConfig
from servoir.frontends.grpc.server import GrpcOptions
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from servoir.sources.versions import All
from servoir.types import ModelSpec
from tests.integration.harness import RunningServer

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_serving.apis")

from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

# Scales x by a factor read from a file beside model.py, through a sibling module; each step
# of the handler leaves a mark so the test sees preprocess -> predict -> postprocess ran.
AFFINE = """
import numpy as np

from . import helper

class Model:
    batched = True
    signature = {
        "inputs": [{"name": "x", "dtype": "float", "shape": [-1, 2]}],
        "outputs": [
            {"name": "y", "dtype": "float", "shape": [-1, 2]},
            {"name": "steps", "dtype": "string", "shape": [-1]},
        ],
    }

    def load(self, path):
        self.factor = float((path / "factor.txt").read_text())

    def preprocess(self, inputs):
        return {"x": inputs["x"], "steps": ["pre"]}

    def predict(self, data):
        x = data["x"]
        if (x == 13).any():
            raise ValueError("13 is unlucky")
        if (x < -100).any():
            raise KeyError("a bug in the model")
        if (x == 99).any():
            raise SystemExit(4)
        if (x == 98).any():
            raise KeyboardInterrupt
        return {"y": helper.scale(x, self.factor), "steps": data["steps"] + ["predict"]}

    def postprocess(self, outputs):
        n = len(outputs["y"])
        return {"y": outputs["y"], "steps": ["+".join(outputs["steps"] + ["post"])] * n}
"""

UPPER = """
import numpy as np

class Model:
    def predict(self, inputs):
        texts = [t.decode("utf-8") for t in inputs["text"].tolist()]
        return {"upper": [t.upper() for t in texts], "length": np.array([len(t) for t in texts])}
"""
UPPER_SIGNATURE = {
    "inputs": [{"name": "text", "dtype": "DT_STRING", "shape": [-1]}],
    "outputs": [
        {"name": "upper", "dtype": "DT_STRING", "shape": [-1]},
        {"name": "length", "dtype": "DT_INT64", "shape": [-1]},
    ],
}
# Writes to its input in place, and has an output no wire format carries (complex64).
INPLACE = """
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "dtype": "float", "shape": [-1, 2]}],
        "outputs": [
            {"name": "y", "dtype": "float", "shape": [-1, 2]},
            {"name": "z", "dtype": "complex64", "shape": [-1]},
        ],
    }

    def predict(self, inputs):
        x = inputs["x"]
        x *= 2
        return {"y": x, "z": x[:, 0].astype(np.complex64)}
"""
SIMPLE = """
class Model:
    signature = {
        "inputs": [{"name": "x", "dtype": "float"}],
        "outputs": [{"name": "x", "dtype": "float"}],
    }
    def predict(self, inputs):
        return inputs
"""


def write_model(path: Path, source: str) -> Path:
    path.mkdir(parents=True)
    (path / "model.py").write_text(textwrap.dedent(source))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("python")
    # Two versions of one model whose sibling modules share a name but not their code.
    for version, factor in ((1, "2.0"), (2, "3.0")):
        path = write_model(root / "affine" / str(version), AFFINE)
        (path / "factor.txt").write_text(factor)
        offset = version * 100
        (path / "helper.py").write_text(f"def scale(x, f):\n    return x * f + {offset}\n")
    write_model(root / "upper" / "1", UPPER)
    write_model(root / "inplace" / "1", INPLACE)
    (root / "upper" / "1" / "signature.json").write_text(json.dumps(UPPER_SIGNATURE))
    bad = {
        "raises": SIMPLE + "    def load(self, path):\n        open(path / 'missing.bin')\n",
        "exits": SIMPLE + "    def load(self, path):\n        raise SystemExit(3)\n",
        "syntax": "class Model:\n    def predict(self, inputs)\n        return inputs\n",
        "noclass": "def predict(inputs):\n    return inputs\n",
        "nosig": SIMPLE.replace("signature =", "other ="),
        "badsig": SIMPLE.replace('"float"}]', '"floaty"}]', 1),
        "twosigs": SIMPLE,
    }
    for name, source in bad.items():
        write_model(root / name / "1", source)
    (root / "twosigs" / "1" / "signature.json").write_text(json.dumps(UPPER_SIGNATURE))
    return root


BAD = ["raises", "exits", "syntax", "noclass", "nosig", "badsig", "twosigs"]


def start(repo: Path, names: list[str], **runtime: bool) -> RunningServer:
    config = ServerConfig(
        models=[ModelConfig(n, repo / n, policy=All()) for n in names],
        rest_port=0,
        grpc=GrpcOptions(port=0, bind_address="127.0.0.1"),
        bind_address="127.0.0.1",
        runtime=RuntimeOptions(**runtime),  # type: ignore[arg-type]
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
    )
    return RunningServer(config).start()


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    running = start(repo, ["affine", "upper", "inplace", *BAD])
    yield running
    running.stop()


@pytest.mark.parametrize(("version", "factor", "offset"), [(1, 2.0, 100), (2, 3.0, 200)])
def test_versions_are_isolated_and_read_files_beside_them(
    client: httpx.Client, version: int, factor: float, offset: int
) -> None:
    x = [[1.0, 2.0], [3.0, -4.0]]
    r = client.post(f"/v1/models/affine/versions/{version}:predict", json={"instances": x})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    np.testing.assert_allclose([row["y"] for row in rows], np.array(x) * factor + offset)
    assert [row["steps"] for row in rows] == ["pre+predict+post"] * 2


def test_each_version_is_its_own_module_and_sys_path_is_untouched(
    server: RunningServer,
) -> None:
    path_before = list(sys.path)
    names = server.call(lambda: [k for k in sys.modules if k.startswith("_servoir_model_affine")])
    packages = [n for n in names if "." not in n]
    assert len(packages) == 2  # one per version, each with its own helper
    assert sorted(n.split(".", 1)[1] for n in names if "." in n) == ["helper", "helper"]
    assert sys.path == path_before


def test_batched_is_declared_to_the_server(server: RunningServer) -> None:
    def batchable(name: str) -> bool:
        assert server.server is not None
        return bool(server.server.manager.handle(ModelSpec(name)).servable.batchable)

    assert server.call(lambda: batchable("affine")) is True  # batched = True
    assert server.call(lambda: batchable("upper")) is False  # says nothing


def test_model_errors(client: httpx.Client) -> None:
    r = client.post("/v1/models/affine:predict", json={"instances": [[13.0, 1.0]]})
    assert r.status_code == 400
    assert r.json()["error"] == "ValueError: 13 is unlucky"
    r = client.post("/v1/models/affine:predict", json={"instances": [[-500.0, 1.0]]})
    assert r.status_code == 500
    assert r.json()["error"] == "model.py raised KeyError (see the server log)"
    r = client.post("/v1/models/affine:predict", json={"instances": [[1.0, 2.0, 3.0]]})
    assert r.status_code == 400
    assert r.json()["error"] == "input 'x' expects shape [-1,2] but got [1,3]"


def test_a_model_that_exits_does_not_stop_the_server(
    server: RunningServer, client: httpx.Client
) -> None:
    for value, name in ((99.0, "SystemExit"), (98.0, "KeyboardInterrupt")):
        r = client.post("/v1/models/affine:predict", json={"instances": [[value, 1.0]]})
        assert r.status_code == 500
        assert r.json()["error"] == f"model.py raised {name} (see the server log)"
    assert server.server is not None
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "affine"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[99.0, 1.0]], np.float32)))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        assert caught.value.code() is grpc.StatusCode.INTERNAL
        assert caught.value.details() == "model.py raised SystemExit (see the server log)"
    ok = client.post("/v1/models/affine:predict", json={"instances": [[1.0, 1.0]]})
    assert ok.status_code == 200


def test_inputs_are_writable_whatever_the_transport(
    server: RunningServer, client: httpx.Client
) -> None:
    # gRPC tensor_content arrives as a read-only view of the request: the model may still
    # write to it, as it may to JSON input.
    assert server.server is not None
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "inplace"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
        request.output_filter.append("y")
        response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.0, 4.0]]


def test_an_output_no_protocol_carries_is_a_clear_error(client: httpx.Client) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
        "outputs": [{"name": "z"}],
    }
    r = client.post("/v2/models/inplace/infer", json=body)
    assert (r.status_code, r.json()) == (
        501,
        {"error": "output 'z' has dtype complex64, which KServe V2 cannot carry"},
    )


def test_strings_over_grpc_with_the_official_client(server: RunningServer) -> None:
    assert server.server is not None
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "upper"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(["héllo", "a b"]))
        response = stub.Predict(request, timeout=30)
    assert list(response.outputs["upper"].string_val) == ["HÉLLO".encode(), b"A B"]
    assert tf.make_ndarray(response.outputs["length"]).tolist() == [5, 3]


def test_metadata_from_signature_json(client: httpx.Client) -> None:
    doc = client.get("/v1/models/upper/metadata").json()
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["text"]["dtype"] == "DT_STRING"
    assert sig["outputs"]["length"]["dtype"] == "DT_INT64"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("raises", "Model.load raised FileNotFoundError: [Errno 2] No such file or directory: "
         "'<version>/missing.bin'"),
        ("exits", "Model.load raised SystemExit: 3"),
        ("syntax", "model.py line 2: expected ':'"),
        ("noclass", "model.py defines no class Model"),
        ("nosig", "no signature: set Model.signature or write signature.json beside model.py"),
        ("badsig", "Model.signature: inputs[0] (x): dtype 'floaty' is not a known type"),
        ("twosigs", "both Model.signature and signature.json declare the signature"),
    ],
)  # fmt: skip
def test_broken_models_end_with_a_clear_error(
    client: httpx.Client, repo: Path, model: str, message: str
) -> None:
    (status,) = client.get(f"/v1/models/{model}").json()["model_version_status"]
    assert status["state"] == "END"
    error = status["status"]["error_message"]
    assert error.startswith(f"Failed to load version 1 of model {model}: {message}")
    assert str(repo) not in error
    r = client.post("/v1/models/upper:predict", json={"instances": ["still up"]})
    assert r.json() == {"predictions": [{"upper": "STILL UP", "length": 8}]}


def test_disabled_python_models_end_with_the_flag_named(repo: Path) -> None:
    running = start(repo, ["upper"], disable_python_models=True)
    try:
        with httpx.Client(base_url=running.rest_url, timeout=30) as client:
            (status,) = client.get("/v1/models/upper").json()["model_version_status"]
            r = client.post("/v1/models/upper:predict", json={"instances": ["x"]})
    finally:
        running.stop()
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "FAILED_PRECONDITION"
    assert status["status"]["error_message"] == (
        "Failed to load version 1 of model upper: Python models are disabled on this server "
        "(--disable_python_models)"
    )
    assert r.status_code == 404
