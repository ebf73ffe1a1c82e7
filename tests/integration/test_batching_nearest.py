"""--batching_length_buckets=nearest on a real server: each batch is the oldest waiting
request and the waiting requests closest to it in length, padded only to its own longest."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest

from servoir.batching.options import BatchingConfig, BatchingOptions
from servoir.config.model_config import ModelConfig
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from tests.integration.harness import RunningServer
from tests.integration.test_batching import batch_thread_busy, mixed, stats
from tests.models import copy_example, mixed_model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("repo")
    copy_example("mlp", root)  # batch_thread_busy parks its request on the mlp model
    mixed_model(root / "padded" / "1")
    options = BatchingOptions(
        num_batch_threads=1, max_batch_size=2, pad_variable_length_inputs=True
    )
    config = ServerConfig(
        models=[ModelConfig(n, root / n) for n in ("mlp", "padded")],
        rest_port=0,
        bind_address="127.0.0.1",
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        num_inference_threads=1,
        runtime=RuntimeOptions(inline_run_max_seconds=0.0),
        batching=BatchingConfig(options, nearest_length=True),
    )
    running = RunningServer(config).start()
    yield running
    running.stop()


def test_requests_are_batched_with_the_nearest_lengths(
    server: RunningServer, client: httpx.Client
) -> None:
    lengths = [9, 20, 8, 19]  # in arrival order they would pair 9+20 and 8+19
    with (
        concurrent.futures.ThreadPoolExecutor(len(lengths)) as pool,
        batch_thread_busy(server, client),
    ):
        futures = []
        for count, n in enumerate(lengths, 1):
            body = {"instances": [mixed(list(range(1, n + 1)), str(n))]}
            futures.append(pool.submit(client.post, "/v1/models/padded:predict", json=body))
            server.poll_until(lambda c=count: stats(server).queued_tasks == c)
    answers = [f.result().json()["predictions"][0] for f in futures]
    # Each answer is its own (count of odd ids); outputs keep the padded length of the
    # batch it ran in: 9 and 8 ran together (padded to 9), 20 and 19 together (to 20).
    assert [a["count"] for a in answers] == [5, 10, 4, 10]
    assert [len(a["kept"]) for a in answers] == [9, 20, 9, 20]
    assert answers[2]["kept"] == [1, 0, 3, 0, 5, 0, 7, 0, 0]
