"""A TF Serving --platform_config_file, served: its tensorflow entry batches TF Serving's
half_plus_two without --enable_batching, and its onnx entry (no enable_model_warmup, as TF's
SessionBundleConfig defaults) leaves an ONNX model's warmup file alone, while models answer
exactly as without the file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from servoir.cli import config_from_flags
from servoir.frontends.grpc.server import GrpcOptions
from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer, metric_values
from tests.integration.tf_models import requires_shared
from tests.models import scale_model
from tests.unit.test_platform_config import entry

pytestmark = requires_shared

PLATFORMS = entry(
    "tensorflow",
    """
    session_config { intra_op_parallelism_threads: 1 inter_op_parallelism_threads: 1 }
    batching_parameters { max_batch_size { value: 8 } num_batch_threads { value: 1 } }
    """,
) + entry("onnx", "")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("platform_config")
    scale = scale_model(root / "scale" / "1", 3.0)
    # Unreadable warmup records: a load that replayed them would fail.
    (scale / "assets.extra").mkdir()
    (scale / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"garbage")
    half = SHARED_TESTDATA / "saved_model_half_plus_two_cpu"
    models = root / "models.config"
    models.write_text(
        "model_config_list {\n"
        f'  config {{ name: "half" base_path: "{half}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "scale" base_path: "{root / "scale"}" model_platform: "onnx" }}\n'
        "}\n"
    )
    platforms = root / "platform.config"
    platforms.write_text(PLATFORMS)
    config = config_from_flags(
        [
            f"--model_config_file={models}",
            f"--platform_config_file={platforms}",
            "--file_system_poll_wait_seconds=0",
            "--max_num_load_retries=0",
        ]
    )
    config = replace(config, rest_port=0, bind_address="127.0.0.1", grpc=GrpcOptions(port=None))
    running = RunningServer(config).start()
    yield running
    running.stop()


def batch_count(client: httpx.Client, model: str) -> float:
    page = metric_values(client.get("/metrics").text)
    return page.get(f'servoir_batch_size_count{{model="{model}"}}', 0.0)


def test_the_tensorflow_entry_batches_tensorflow_models(client: httpx.Client) -> None:
    before = batch_count(client, "half")
    response = client.post("/v1/models/half:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [2.5, 3.0, 4.5]}
    assert batch_count(client, "half") == before + 1


def test_the_onnx_entry_leaves_onnx_models_unbatched_and_not_warmed_up(
    client: httpx.Client,
) -> None:
    status = client.get("/v1/models/scale").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]
    response = client.post("/v1/models/scale:predict", json={"instances": [[1.0, 2.0]]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"y": [3.0, 6.0], "total": 3.0}]
    assert batch_count(client, "scale") == 0
