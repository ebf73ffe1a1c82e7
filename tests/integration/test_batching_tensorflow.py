"""Dynamic batching wraps TensorFlow SavedModels too (TF Serving's own half_plus_two), and
Classify/Regress go through it: concurrent requests are run as one batch and each caller
gets exactly its own answer."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator

import httpx
import pytest

from servoir.batching.options import BatchingConfig, BatchingOptions
from servoir.config.model_config import ModelConfig
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer
from tests.integration.test_batching import stats
from tests.integration.tf_models import requires_shared

pytestmark = requires_shared


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = ServerConfig(
        models=[
            ModelConfig("half", SHARED_TESTDATA / "saved_model_half_plus_two_cpu"),
            ModelConfig("counter", SHARED_TESTDATA / "saved_model_counter"),
        ],
        rest_port=0,
        bind_address="127.0.0.1",
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        num_inference_threads=1,
        runtime=RuntimeOptions(inline_run_max_seconds=0.0),
        batching=BatchingConfig(BatchingOptions(num_batch_threads=1, max_batch_size=8)),
    )
    running = RunningServer(config).start()
    yield running
    running.stop()


def test_concurrent_predicts_run_as_one_batch(server: RunningServer, client: httpx.Client) -> None:
    assert server.server is not None
    xs = [[1.0], [10.0, 11.0], [100.0]]  # one request of two rows
    release = threading.Event()
    server.server._inference_executor.submit(release.wait)  # the only inference thread
    before = stats(server)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(client.post, "/v1/models/half:predict", json={"instances": [0.5]})
        server.poll_until(lambda: stats(server).running_batches == 1)  # holds the thread
        futures = []
        for count, x in enumerate(xs, 1):
            body = {"instances": x}
            futures.append(pool.submit(client.post, "/v1/models/half:predict", json=body))
            server.poll_until(lambda n=count: stats(server).queued_tasks == n)
        release.set()
        assert first.result().json() == {"predictions": [2.25]}
        answers = [f.result().json()["predictions"] for f in futures]
    assert answers == [[v / 2 + 2 for v in x] for x in xs]
    after = stats(server)
    assert after.batches_run - before.batches_run == 2  # the first alone, then the three
    assert after.rows_run - before.rows_run == 5


def test_regress_goes_through_batching(server: RunningServer, client: httpx.Client) -> None:
    before = stats(server).rows_run
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]}
    response = client.post("/v1/models/half:regress", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [2.5, 3.0]}
    assert stats(server).rows_run - before == 2
    # TF Serving's runtime_latency, labelled as TF Serving labels a TensorFlow model's run
    assert server.server is not None
    text = server.server.metrics.render_tf().decode()
    assert ':tensorflow:serving:runtime_latency_count{model_name="half",API="Regress",' in text
    assert 'runtime="TF1"}' in text


def test_a_model_with_scalar_tensors_is_served_unbatched(
    server: RunningServer, client: httpx.Client
) -> None:
    before = stats(server).rows_run
    body = {"signature_name": "incr_counter_by", "inputs": {"delta": 3.0}}
    first = client.post("/v1/models/counter:predict", json=body)
    second = client.post("/v1/models/counter:predict", json=body)
    assert first.status_code == second.status_code == 200, first.text
    assert second.json()["outputs"] == first.json()["outputs"] + 3.0
    assert stats(server).rows_run == before
