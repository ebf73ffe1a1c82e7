"""The PyTorch runtime against a real server: TorchScript and torch.export models built here,
served over REST and gRPC (official client), answers compared with torch run in-process."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from servoir.config.model_config import ModelConfig
from servoir.frontends.grpc.server import GrpcOptions
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from tests.integration.harness import RunningServer

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_serving.apis")

from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

PAIR_SIGNATURE = {
    "inputs": [
        {"name": "x", "dtype": "DT_FLOAT", "shape": [-1, 3]},
        {"name": "k", "dtype": "int64", "shape": [-1]},
    ],
    "outputs": [
        {"name": "y", "dtype": "float", "shape": [-1, 2]},
        {"name": "z", "dtype": "float", "shape": [-1]},
    ],
}
X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]], np.float32)
K = np.array([2, 3], np.int64)


class Pair(torch.nn.Module):  # type: ignore[misc]
    """(x float [b, 3], k int64 [b]) -> (linear(x) [b, 2], sum(x) * k [b])."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), x.sum(1) * k.to(x.dtype)


class PairDict(Pair):
    def forward(self, x: torch.Tensor, k: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        y, z = self.linear(x), x.sum(1) * k.to(x.dtype)
        return {"z": z, "y": y}


class Guarded(torch.nn.Module):  # type: ignore[misc]
    """forward's module argument is not named self; a `raise` inside TorchScript code."""

    def forward(s, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 10):
            raise RuntimeError("too big")
        return x * 2


def write_signature(path: Path, doc: Any) -> None:
    (path / "signature.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))


def torchscript(path: Path, module: Any, signature: Any = PAIR_SIGNATURE) -> Path:
    path.mkdir(parents=True)
    torch.jit.script(module.eval()).save(str(path / "model.pt"))
    if signature is not None:
        write_signature(path, signature)
    return path


def exported(path: Path, signature: Any = PAIR_SIGNATURE) -> Path:
    path.mkdir(parents=True)
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        PairDict().eval(),
        (torch.from_numpy(X), torch.from_numpy(K)),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    torch.export.save(program, str(path / "model.pt2"))
    write_signature(path, signature)
    return path


def rewrite_archive(path: Path, change: dict[str, bytes]) -> None:
    """Replace entries of model.pt2 (names relative to the archive's root folder)."""
    archive = path / "model.pt2"
    with zipfile.ZipFile(archive) as src:
        entries = {i.filename: src.read(i.filename) for i in src.infolist()}
    root = next(iter(entries)).split("/")[0]
    entries.update({f"{root}/{name}": data for name, data in change.items()})
    with zipfile.ZipFile(archive, "w") as dst:
        for name, data in entries.items():
            dst.writestr(name, data)


class _MakeDir:
    """Unpickling this creates a directory: proof that a pickle ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.target,))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch")
    torchscript(root / "script" / "1", Pair())
    exported(root / "export" / "1")
    single = {
        "inputs": [{"name": "x", "dtype": "float", "shape": [-1, 3]}],
        "outputs": [{"name": "out", "dtype": "float", "shape": [-1, 3]}],
    }
    torchscript(root / "single" / "1", torch.nn.ReLU(), single)
    torchscript(root / "guarded" / "1", Guarded(), single)
    torchscript(root / "nosig" / "1", Pair(), None)
    torchscript(root / "badsig" / "1", Pair(), '{"inputs": [{"name": "x", "dtype": "DT_FLOAT",}]}')
    torchscript(
        root / "wrongtype" / "1",
        Pair(),
        {**PAIR_SIGNATURE, "outputs": [{"name": "y", "dtype": "DT_FLAOT"}]},
    )
    torchscript(root / "arity" / "1", Pair(), single)
    extra = {"name": "w", "dtype": "float", "shape": [-1]}
    three = {**PAIR_SIGNATURE, "outputs": [*PAIR_SIGNATURE["outputs"], extra]}
    torchscript(root / "mismatch" / "1", Pair(), three)
    exported(root / "pickled_inputs" / "1")
    bomb = pickle.dumps(_MakeDir(root / "pwned"))
    rewrite_archive(root / "pickled_inputs" / "1", {"data/sample_inputs/model.pt": bomb})
    exported(root / "pickled_weights" / "1")
    with zipfile.ZipFile(root / "pickled_weights" / "1" / "model.pt2") as archive:
        name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(name))
    for meta in config["config"].values():
        meta["use_pickle"] = True
    rewrite_archive(
        root / "pickled_weights" / "1",
        {"data/weights/model_weights_config.json": json.dumps(config).encode()},
    )
    return root


MODELS = [
    "script", "export", "single", "guarded", "mismatch", "nosig", "badsig", "wrongtype", "arity",
    "pickled_inputs", "pickled_weights",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    config = ServerConfig(
        models=[ModelConfig(n, repo / n) for n in MODELS],
        rest_port=0,
        grpc=GrpcOptions(port=0, bind_address="127.0.0.1"),
        bind_address="127.0.0.1",
        runtime=RuntimeOptions(torch_intra_op_threads=1),
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
    )
    running = RunningServer(config).start()
    yield running
    running.stop()


def expected_pair() -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        y, z = Pair().eval()(torch.from_numpy(X), torch.from_numpy(K))
    return y.numpy(), z.numpy()


@pytest.mark.parametrize("model", ["script", "export"])
def test_rest_predict_matches_torch(client: httpx.Client, model: str) -> None:
    body = {"instances": [{"x": x.tolist(), "k": int(k)} for x, k in zip(X, K, strict=True)]}
    r = client.post(f"/v1/models/{model}:predict", json=body)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    y, z = expected_pair()
    np.testing.assert_allclose([row["y"] for row in rows], y, rtol=1e-6)
    np.testing.assert_allclose([row["z"] for row in rows], z, rtol=1e-6)


def test_single_tensor_output_and_output_filter(client: httpx.Client) -> None:
    r = client.post("/v1/models/single:predict", json={"inputs": [[-1.0, 0.0, 2.5]]})
    assert r.json() == {"outputs": [[0.0, 0.0, 2.5]]}
    r = client.post("/v1/models/export:predict", json={"inputs": {"x": [[1, 1, 1]], "k": [4]}})
    assert r.json()["outputs"]["z"] == [12.0]


def test_metadata_comes_from_signature_json(client: httpx.Client) -> None:
    doc = client.get("/v1/models/script/metadata").json()
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(sig["inputs"]) == {"x", "k"} and set(sig["outputs"]) == {"y", "z"}
    assert sig["inputs"]["k"]["dtype"] == "DT_INT64"
    dims = [d["size"] for d in sig["outputs"]["y"]["tensor_shape"]["dim"]]
    assert dims == ["-1", "2"]
    for model in ("script", "export"):  # Triton's platform name, as docs/api.md says
        assert client.get(f"/v2/models/{model}").json()["platform"] == "pytorch_libtorch"


def test_bad_inputs_get_precise_errors(client: httpx.Client) -> None:
    r = client.post("/v1/models/export:predict", json={"inputs": {"x": [[1, 2, 3, 4]], "k": [1]}})
    assert r.status_code == 400
    assert r.json()["error"] == "input 'x' expects shape [-1,3] but got [1,4]"
    # Batch sizes that disagree pass the signature's checks and fail inside the model.
    body = {"inputs": {"x": [[1, 2, 3], [4, 5, 6]], "k": [1, 2, 3]}}
    r = client.post("/v1/models/script:predict", json=body)
    assert r.status_code == 400
    assert r.json()["error"].startswith("model execution failed: The size of tensor a (2)")
    assert "Traceback" not in r.json()["error"]


def test_a_raise_in_torchscript_is_the_models_error(client: httpx.Client) -> None:
    r = client.post("/v1/models/guarded:predict", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [[2.0, 4.0, 6.0]]
    r = client.post("/v1/models/guarded:predict", json={"instances": [[10, 20, 30]]})
    assert (r.status_code, r.json()) == (400, {"error": "model execution failed: too big"})


def test_outputs_that_disagree_with_signature_json_are_internal(client: httpx.Client) -> None:
    r = client.post("/v1/models/mismatch:predict", json={"inputs": {"x": [[1, 2, 3]], "k": [1]}})
    assert r.status_code == 500
    assert r.json()["error"] == (
        "model outputs do not match signature.json: the model returned 2 values for 3 "
        "declared outputs"
    )


def test_grpc_predict_with_the_official_client(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:  # type: ignore[union-attr]
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "export"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
        request.inputs["k"].CopyFrom(tf.make_tensor_proto(K))
        response = stub.Predict(request, timeout=30)
    y, z = expected_pair()
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), y, rtol=1e-6)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["z"]), z, rtol=1e-6)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nosig", "signature.json not found in the version directory"),
        ("badsig", "signature.json is not valid JSON: Expecting property name"),
        ("wrongtype", "outputs[0] (y): dtype 'DT_FLAOT' is not a known type"),
        ("arity", "signature.json declares 1 input(s) but the model takes 2"),
        ("pickled_inputs", "model.pt2 has sample inputs that are not plain tensors"),
        ("pickled_weights", "model.pt2 stores linear.weight as a pickle"),
    ],
)
def test_bad_versions_end_with_a_clear_error(
    client: httpx.Client, repo: Path, model: str, message: str
) -> None:
    (status,) = client.get(f"/v1/models/{model}").json()["model_version_status"]
    assert status["state"] == "END"
    error = status["status"]["error_message"]
    assert error.startswith(f"Failed to load version 1 of model {model}: ")
    assert message in error
    assert str(repo) not in error
    assert not (repo / "pwned").exists()  # the pickle in model.pt2 never ran
    # and the server keeps serving the others
    r = client.post("/v1/models/single:predict", json={"inputs": [[1.0, 2.0, 3.0]]})
    assert r.status_code == 200


def test_intra_op_threads_follow_the_option(server: RunningServer) -> None:
    # A thread new to torch takes the process-wide count, which loading the models set.
    with ThreadPoolExecutor(1) as fresh:
        assert fresh.submit(torch.get_num_threads).result() == 1


def test_export_archives_load_side_by_side(tmp_path: Path) -> None:
    # torch.export.load has process-wide state: loads on parallel load threads must not fail.
    exported(tmp_path / "e0" / "1")
    for i in range(1, 4):
        shutil.copytree(tmp_path / "e0", tmp_path / f"e{i}")
    config = ServerConfig(
        models=[ModelConfig(f"e{i}", tmp_path / f"e{i}") for i in range(4)],
        rest_port=0,
        grpc=GrpcOptions(port=None),
        bind_address="127.0.0.1",
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        num_load_threads=4,
    )
    running = RunningServer(config).start()
    try:
        for i in range(4):
            status = httpx.get(f"{running.rest_url}/v1/models/e{i}").json()
            assert status["model_version_status"][0]["state"] == "AVAILABLE", status
    finally:
        running.stop()
