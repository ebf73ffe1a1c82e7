"""Dynamic batching around PyTorch and Python models, and batching through version swaps.

TensorFlow and ONNX have their own files; here, requests queued together for a TorchScript,
a torch.export or a Python model that declares `batched = True` run as one batch, each caller
gets its own rows back, a Python model that does not declare it is served unbatched, and a
version swap under batched load fails no request (including requests still queued on the
version being unloaded).
"""

from __future__ import annotations

import concurrent.futures
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from servoir.batching.options import BatchingConfig, BatchingOptions
from servoir.config.model_config import ModelConfig
from servoir.core.states import State
from servoir.frontends.grpc.server import GrpcOptions
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from tests.integration.harness import RunningServer
from tests.integration.load import ClosedLoop
from tests.integration.test_batching import batch_thread_busy, stats
from tests.integration.test_lifecycle import ONE, factor, publish, serve, wait_states
from tests.models import scale_model

torch = pytest.importorskip("torch")

from tests.integration.test_torch_runtime import Pair, exported, torchscript  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

# `rows` reports how many rows the call that produced it saw: more than the request's own
# rows proves the request shared a batch.
PYTHON_MODEL = """
import numpy as np

class Model:
    {declaration}
    signature = {{
        "inputs": [{{"name": "x", "dtype": "float", "shape": [-1, 2]}}],
        "outputs": [
            {{"name": "y", "dtype": "float", "shape": [-1, 2]}},
            {{"name": "rows", "dtype": "int64", "shape": [-1]}},
        ],
    }}

    def predict(self, inputs):
        x = inputs["x"]
        return {{"y": x * 2, "rows": np.full(len(x), len(x), np.int64)}}
"""


def python_model(path: Path, batched: bool) -> None:
    path.mkdir(parents=True)
    declaration = "batched = True" if batched else "pass"
    (path / "model.py").write_text(textwrap.dedent(PYTHON_MODEL.format(declaration=declaration)))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtimes")
    torchscript(root / "script" / "1", Pair())
    exported(root / "export" / "1")
    python_model(root / "batched" / "1", batched=True)
    python_model(root / "unbatched" / "1", batched=False)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    # One batch thread and one inference thread, every run on that thread: a test parks a job
    # on it and then knows exactly what is queued (as tests/integration/test_batching.py).
    config = ServerConfig(
        models=[ModelConfig(p.name, p) for p in sorted(repo.iterdir())],
        rest_port=0,
        bind_address="127.0.0.1",
        grpc=GrpcOptions(port=None),
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        num_inference_threads=1,
        runtime=RuntimeOptions(inline_run_max_seconds=0.0, torch_intra_op_threads=1),
        batching=BatchingConfig(BatchingOptions(num_batch_threads=1, max_batch_size=16)),
    )
    running = RunningServer(config).start()
    yield running
    running.stop()


def queued_together(
    server: RunningServer, client: httpx.Client, model: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """Hold the only batch thread with a first request, queue `bodies` behind it, release:
    the queued requests run as one batch. Returns their responses, in order."""
    url = f"/v1/models/{model}:predict"
    with (
        concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool,
        batch_thread_busy(server, client, lambda: client.post(url, json=bodies[0])) as first,
    ):
        before = stats(server)
        futures = [pool.submit(client.post, url, json=body) for body in bodies]
        server.poll_until(lambda: stats(server).queued_tasks == len(bodies))
    assert first.result().status_code == 200, first.result().text
    responses = [f.result() for f in futures]
    server.poll_until(lambda: stats(server).running_batches == 0)
    after = stats(server)
    # the first request's batch ends, then one batch runs all the queued requests
    assert after.batches_run - before.batches_run == 2
    assert after.rows_run - before.rows_run == sum(len(b["instances"]) for b in bodies)
    return responses


def pair_rows(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((count, 3), dtype=np.float32), rng.integers(1, 5, count, dtype=np.int64)


@pytest.mark.parametrize("model", ["script", "export"])
def test_torch_requests_queued_together_run_as_one_batch(
    server: RunningServer, client: httpx.Client, model: str
) -> None:
    requests = [pair_rows(seed, count) for seed, count in ((1, 1), (2, 3), (3, 2))]
    bodies = [
        {"instances": [{"x": x.tolist(), "k": int(k)} for x, k in zip(xs, ks, strict=True)]}
        for xs, ks in requests
    ]
    responses = queued_together(server, client, model, bodies)
    reference = Pair().eval()
    for (xs, ks), response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        with torch.inference_mode():
            y, z = reference(torch.from_numpy(xs), torch.from_numpy(ks))
        rows = response.json()["predictions"]
        np.testing.assert_allclose([r["y"] for r in rows], y.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([r["z"] for r in rows], z.numpy(), rtol=1e-5, atol=1e-6)


def test_a_python_model_that_declares_batched_is_batched(
    server: RunningServer, client: httpx.Client
) -> None:
    xs = [[[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0]]]
    responses = queued_together(server, client, "batched", [{"instances": x} for x in xs])
    for x, response in zip(xs, responses, strict=True):
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        assert [r["y"] for r in rows] == [[2 * v for v in row] for row in x]
        assert [r["rows"] for r in rows] == [4] * len(x)  # the batch of all three requests


def test_a_python_model_that_does_not_declare_it_is_served_unbatched(
    server: RunningServer, client: httpx.Client
) -> None:
    before = stats(server)
    response = client.post("/v1/models/unbatched:predict", json={"instances": [[1.0, 2.0]]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"y": [2.0, 4.0], "rows": 1}]
    assert stats(server).batches_run == before.batches_run


@pytest.fixture
def swapping(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    base = tmp_path / "m"
    scale_model(base / "1", 1.0)
    running = serve(  # test_lifecycle's polling server, batched on one thread
        [ModelConfig("m", base)],
        num_inference_threads=1,
        runtime=RuntimeOptions(inline_run_max_seconds=0.0),
        batching=BatchingConfig(BatchingOptions(num_batch_threads=1, max_batch_size=8)),
    )
    yield running, base
    running.stop()


def test_a_version_swap_under_batched_load_fails_no_request(
    swapping: tuple[RunningServer, Path],
) -> None:
    server, base = swapping
    with ClosedLoop(server.rest_url + "/v1/models/m:predict", ONE, threads=8) as load:
        load.wait_for_count(40)
        publish(base, 2, lambda p: scale_model(p, 2.0))
        wait_states(server, "m", {2: State.AVAILABLE, 1: State.END})
        load.wait_for(
            lambda outcomes: len(outcomes) > 8 and {factor(o) for o in outcomes[-8:]} == {2.0}
        )
    assert load.failures() == []
    assert factor(load.outcomes[0]) == 1.0
    # the unloaded version's queue left the shared scheduler with it
    assert stats(server).queues == 1


def test_requests_queued_on_an_unloading_version_are_answered_by_it(
    swapping: tuple[RunningServer, Path],
) -> None:
    server, base = swapping
    with (
        httpx.Client(base_url=server.rest_url, timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(5) as pool,
    ):

        def send() -> httpx.Response:
            return client.post("/v1/models/m:predict", json=ONE)

        with batch_thread_busy(server, client, send) as first:
            queued = [pool.submit(send) for _ in range(4)]
            server.poll_until(lambda: stats(server).queued_tasks == 4)
            publish(base, 2, lambda p: scale_model(p, 2.0))
            wait_states(server, "m", {2: State.AVAILABLE, 1: State.UNLOADING})  # waits for them
            after_swap = pool.submit(send)
            server.poll_until(lambda: stats(server).queued_tasks == 5)  # in version 2's queue
        responses = [first.result(), *(f.result() for f in queued)]
        newer = after_swap.result()
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.json()["predictions"][0]["y"][0] for r in responses} == {1.0}
    assert newer.status_code == 200
    assert newer.json()["predictions"][0]["y"][0] == 2.0
    wait_states(server, "m", {2: State.AVAILABLE, 1: State.END})
