"""Dynamic batching on a real server, over REST (httpx) and TF Serving gRPC.

Every model gets its own `batching_params.pbtxt` (--enable_per_model_batching_parameters),
so one server shows every behaviour. One batch thread and one inference thread, and every
run goes to that thread (inline_run_max_seconds=0): a test makes the batch thread busy by
parking a job on the inference executor, then knows exactly what is queued.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from servoir.batching.options import BatchingConfig, BatchingOptions
from servoir.config.model_config import ModelConfig
from servoir.config.monitoring import PrometheusConfig
from servoir.frontends.grpc.server import GrpcOptions
from servoir.frontends.grpc.tf_tensors import decode_tensor, encode_tensor
from servoir.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import ServerConfig
from tests.integration.harness import RunningServer, metric_values
from tests.models import copy_example, mixed_model, scale_model

PARAMS = {
    "mlp": "max_batch_size { value: 64 } max_enqueued_batches { value: 1000 }",
    "tiny": "max_batch_size { value: 2 } max_enqueued_batches { value: 2 }",
    "split": (
        "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 2 } allowed_batch_sizes: 2 allowed_batch_sizes: 8"
    ),
    "padded": "max_batch_size { value: 8 } pad_variable_length_inputs: true",
    "splitpad": (
        "max_batch_size { value: 8 } pad_variable_length_inputs: true "
        "enable_large_batch_splitting { value: true } max_execution_batch_size { value: 2 }"
    ),
    "strict": "max_batch_size { value: 8 }",
    "bad": "max_batch_size { value: 8 } allowed_batch_sizes: 4",
}
MLP = "mlp/2/model.onnx"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    copy_example("mlp", root)
    shutil.copytree(root / "mlp", root / "tiny")
    scale_model(root / "split" / "1", 3.0)
    scale_model(root / "plain" / "1", 3.0)  # no parameters file: not batched
    scale_model(root / "bad" / "1", 3.0)
    mixed_model(root / "padded" / "1")
    mixed_model(root / "splitpad" / "1")
    mixed_model(root / "strict" / "1")
    for name, text in PARAMS.items():
        latest = max(p for p in (root / name).iterdir())
        (latest / "batching_params.pbtxt").write_text(text)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    names = sorted(p.name for p in repo.iterdir())
    config = ServerConfig(
        models=[ModelConfig(n, repo / n) for n in names],
        rest_port=0,
        bind_address="127.0.0.1",
        grpc=GrpcOptions(port=0, bind_address="127.0.0.1"),
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        num_inference_threads=1,
        runtime=RuntimeOptions(inline_run_max_seconds=0.0),
        batching=BatchingConfig(BatchingOptions(num_batch_threads=1), per_model=True),
        prometheus=PrometheusConfig(enable=True),
    )
    running = RunningServer(config).start()
    yield running
    running.stop()


def stats(server: RunningServer) -> Any:
    assert server.server is not None and server.server.batch_scheduler is not None
    return server.server.batch_scheduler.stats()


@contextlib.contextmanager
def batch_thread_busy(
    server: RunningServer,
    client: httpx.Client,
    send: Callable[[], httpx.Response] | None = None,
) -> Iterator[Any]:
    """Park a job on the only inference thread, then send one request (`send`; default: a
    row to mlp): its batch takes the only batch thread and waits behind the job until the
    block ends. Yields its future."""
    assert server.server is not None
    release = threading.Event()
    server.server._inference_executor.submit(release.wait)  # the only inference thread
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        first = pool.submit(send or (lambda: predict(client, "mlp", mlp_rows(1, seed=99))))
        server.poll_until(lambda: stats(server).running_batches == 1)
        yield first
    finally:
        release.set()
        pool.shutdown(wait=True)


def mlp_rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 784), dtype=np.float32)


def reference(repo: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repo / MLP), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


def mlp_request(seed: int) -> Any:
    """A TF gRPC PredictRequest of one mlp row."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    encode_tensor("x", mlp_rows(1, seed=seed), request.inputs["x"], tensor_content=True)
    return request


def predict(client: httpx.Client, model: str, x: np.ndarray) -> httpx.Response:
    return client.post(f"/v1/models/{model}:predict", json={"instances": x.tolist()})


def test_concurrent_clients_each_get_exactly_their_own_outputs(
    server: RunningServer, repo: Path
) -> None:
    inputs = mlp_rows(96, seed=1)
    expected = reference(repo, inputs)

    def one(i: int) -> np.ndarray:
        # A client (and connection) per request: one httpx.Client shared by 32 threads can
        # close a pooled socket under another thread's read (EBADF), a client-side race.
        with httpx.Client(base_url=server.rest_url, timeout=30) as own:
            response = predict(own, "mlp", inputs[i : i + 1])
        assert response.status_code == 200, response.text
        return np.asarray(response.json()["predictions"], np.float32)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        got = list(pool.map(one, range(len(inputs))))
    for i, value in enumerate(got):
        np.testing.assert_allclose(value, expected[i : i + 1], rtol=1e-5, atol=1e-6)


def test_requests_queued_behind_a_busy_thread_run_as_one_batch(
    server: RunningServer, client: httpx.Client, repo: Path
) -> None:
    inputs = mlp_rows(12, seed=2)
    expected = reference(repo, inputs)
    before = stats(server)
    with (
        concurrent.futures.ThreadPoolExecutor(12) as pool,
        batch_thread_busy(server, client) as first,
    ):
        futures = [pool.submit(predict, client, "mlp", inputs[i : i + 1]) for i in range(12)]
        server.poll_until(lambda: stats(server).queued_tasks == 12)
    assert first.result().status_code == 200
    for i, future in enumerate(futures):
        got = np.asarray(future.result().json()["predictions"], np.float32)
        np.testing.assert_allclose(got, expected[i : i + 1], rtol=1e-5, atol=1e-6)
    after = stats(server)
    assert after.batches_run - before.batches_run == 2  # the first request, then all twelve
    assert after.rows_run - before.rows_run == 13


def test_a_full_queue_answers_503_for_exactly_the_overflow(
    server: RunningServer, client: httpx.Client
) -> None:
    # tiny: batches of 2 rows, at most 2 waiting batches: 4 requests wait, 3 of 7 are refused.
    with (
        concurrent.futures.ThreadPoolExecutor(7) as pool,
        batch_thread_busy(server, client),
    ):
        futures = [pool.submit(predict, client, "tiny", mlp_rows(1, seed=i)) for i in range(7)]
        done: set[Any] = set()
        while len(done) < 3:
            finished, _ = concurrent.futures.wait(
                set(futures) - done, timeout=30, return_when=concurrent.futures.FIRST_COMPLETED
            )
            assert finished, "the overflow was not refused at once"
            done |= finished
        assert len(done) == 3
        server.poll_until(lambda: stats(server).queued_tasks == 4)
        for future in done:
            response = future.result()
            assert response.status_code == 503
            assert response.json() == {
                "error": "The batch scheduling queue to which this task was submitted is full"
            }
    assert sorted(f.result().status_code for f in futures) == [200] * 4 + [503] * 3


def test_an_expired_grpc_deadline_is_answered_and_never_executed(
    server: RunningServer, client: httpx.Client
) -> None:
    assert server.server is not None
    request = mlp_request(seed=3)
    before = stats(server)
    with (
        grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel,
        batch_thread_busy(server, client) as first,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=0.3)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert first.result().status_code == 200
    server.poll_until(lambda: stats(server).running_batches == 0)
    after = stats(server)
    assert after.rows_run - before.rows_run == 1  # only the request that held the thread
    assert after.expired - before.expired == 1
    # Counted as what it was, whether the server's timer or the client's deadline ended it.
    expired = ':tensorflow:serving:request_count{model_name="mlp",status="DEADLINE_EXCEEDED"}'
    assert tf_metrics(client).get(expired, 0) >= 1


def test_a_cancelled_grpc_call_is_counted_as_cancelled(
    server: RunningServer, client: httpx.Client
) -> None:
    assert server.server is not None
    request = mlp_request(seed=4)
    cancelled = ':tensorflow:serving:request_count{model_name="mlp",status="CANCELLED"}'
    before = tf_metrics(client).get(cancelled, 0.0)
    with (
        grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel,
        batch_thread_busy(server, client),
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        call = stub.Predict.future(request, timeout=60)
        server.poll_until(lambda: stats(server).queued_tasks == 1)
        call.cancel()
        server.poll_until(
            lambda: tf_metrics(client).get(cancelled, 0.0) == before + 1, on_loop=False
        )


def test_grpc_requests_are_batched_too(server: RunningServer, repo: Path) -> None:
    assert server.server is not None
    inputs = mlp_rows(24, seed=4)
    expected = reference(repo, inputs)
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def one(i: int) -> np.ndarray:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "mlp"
            encode_tensor("x", inputs[i : i + 1], request.inputs["x"], tensor_content=True)
            return decode_tensor("logits", stub.Predict(request, timeout=30).outputs["logits"])

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            got = list(pool.map(one, range(len(inputs))))
    for i, value in enumerate(got):
        np.testing.assert_allclose(value, expected[i : i + 1], rtol=1e-5, atol=1e-6)


def test_large_requests_are_split_and_batches_padded(
    server: RunningServer, client: httpx.Client
) -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    before = stats(server)
    response = predict(client, "split", x)
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert [p["y"] for p in got] == (x * 3).tolist()
    assert [p["total"] for p in got] == x.sum(axis=1).tolist()
    after = stats(server)
    # 5 rows in batches of at most 2 (2 + 2 + 1), the last padded up to the allowed 2.
    assert after.batches_run - before.batches_run == 3
    assert after.rows_run - before.rows_run == 6
    too_big = predict(client, "split", np.zeros((9, 2), np.float32))
    assert too_big.status_code == 400
    assert too_big.json()["error"] == "Task size 9 is larger than maximum input batch size 8"


def tf_metrics(client: httpx.Client) -> dict[str, float]:
    """TF Serving's monitoring page as {series with labels: value}."""
    return metric_values(client.get("/monitoring/prometheus/metrics").text)


def test_tf_servings_batching_metrics_at_the_monitoring_path(client: httpx.Client) -> None:
    before = tf_metrics(client)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert predict(client, "split", x).status_code == 200
    after = tf_metrics(client)

    def grew(series: str) -> float:
        name = ":tensorflow:serving:batching_session:" + series
        return after.get(name, 0.0) - before.get(name, 0.0)

    # 5 rows split into batches of 2 + 2 + 1, the last padded to the allowed size 2.
    assert grew("wrapped_run_count{}") == 3
    assert grew("input_batch_size_count{}") == 1  # one request, one input tensor
    assert grew('input_batch_size_bucket{le="4"}') == 0
    assert grew('input_batch_size_bucket{le="8"}') == 1
    assert grew("processed_batch_size_sum{}") == 6
    assert grew('padding_size_count{execution_batch_size="2"}') == 3
    assert grew('padding_size_sum{execution_batch_size="2"}') == 1
    assert grew('queuing_latency_count{thread_pool_name=""}') == 3


def mixed(ids: list[int], tag: str) -> dict[str, Any]:
    return {"ids": ids, "mask": [i % 2 == 1 for i in ids], "tag": tag}


def test_variable_length_inputs_are_padded(server: RunningServer, client: httpx.Client) -> None:
    bodies = [mixed([1, 2, 3], "a"), mixed([5, 7, 9, 11, 13], "b"), mixed([4], "c")]
    with (
        concurrent.futures.ThreadPoolExecutor(3) as pool,
        batch_thread_busy(server, client),
    ):
        futures = [
            pool.submit(client.post, "/v1/models/padded:predict", json={"instances": [b]})
            for b in bodies
        ]
        server.poll_until(lambda: stats(server).queued_tasks == 3)
    answers = [f.result().json()["predictions"][0] for f in futures]
    # Zero padding keeps every real value; outputs keep the batch's padded length (as TF).
    assert [a["count"] for a in answers] == [2, 5, 0]
    # (TF's REST API sends outputs named *_bytes as base64: YQ== is "a".)
    assert [a["tag_bytes"] for a in answers] == [{"b64": "YQ=="}, {"b64": "Yg=="}, {"b64": "Yw=="}]
    assert answers[0]["kept"] == [1, 0, 3, 0, 0]
    assert answers[2]["kept"] == [0, 0, 0, 0, 0]


def test_a_split_request_whose_pieces_were_padded_differently_is_joined(
    server: RunningServer, client: httpx.Client
) -> None:
    # Batches of 2 rows: a (length 5) opens one, b (4 rows of length 2) is cut 1 + 2 + 1,
    # its first row padded to 5 with a, the rest to 2; c shares b's last batch.
    a = {"instances": [mixed([1, 2, 3, 4, 5], "a")]}
    b = {"instances": [mixed([10 + i, 20 + i], f"b{i}") for i in range(4)]}
    c = {"instances": [mixed([7, 9], "c")]}
    with (
        concurrent.futures.ThreadPoolExecutor(3) as pool,
        batch_thread_busy(server, client),
    ):
        futures = []
        for queued, body in zip((1, 4, 5), (a, b, c), strict=True):
            futures.append(pool.submit(client.post, "/v1/models/splitpad:predict", json=body))
            server.poll_until(lambda n=queued: stats(server).queued_tasks == n)
    answers = [f.result() for f in futures]
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    kept = [[p["kept"] for p in r.json()["predictions"]] for r in answers]
    assert kept[0] == [[1, 0, 3, 0, 5]]
    # Every row of b comes back at the longest of its pieces' lengths, zeros after its own.
    assert kept[1] == [[0, 0, 0, 0, 0], [11, 21, 0, 0, 0], [0, 0, 0, 0, 0], [13, 23, 0, 0, 0]]
    assert kept[2] == [[7, 9]]


def test_a_rest_client_that_disconnects_while_queued_is_not_run(
    server: RunningServer, client: httpx.Client
) -> None:
    assert server.server is not None
    cancelled = ':tensorflow:serving:request_count{model_name="mlp",status="CANCELLED"}'
    gone_before = tf_metrics(client).get(cancelled, 0.0)
    body = json.dumps({"instances": mlp_rows(1, seed=5).tolist()}).encode()
    before = stats(server)
    with batch_thread_busy(server, client) as first:
        with socket.create_connection(("127.0.0.1", server.server.rest_port)) as raw:
            raw.sendall(
                b"POST /v1/models/mlp:predict HTTP/1.1\r\nHost: t\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            server.poll_until(lambda: stats(server).queued_tasks == 1)
        # The client gave up; the server notices while the request is still queued.
        server.poll_until(
            lambda: tf_metrics(client).get(cancelled, 0.0) == gone_before + 1, on_loop=False
        )
    assert first.result().status_code == 200
    server.poll_until(lambda: stats(server).running_batches == 0)
    assert stats(server).rows_run - before.rows_run == 1  # only the request holding the thread
    servoir = metric_values(client.get("/metrics").text)
    assert (
        servoir[
            'servoir_requests_total{code="CANCELLED",model="mlp",protocol="tf_rest",signature="",'
            'version=""}'
        ]
        >= 1
    )


def test_different_shapes_without_padding_fail_only_the_odd_request(
    server: RunningServer, client: httpx.Client
) -> None:
    bodies = [mixed([1, 2], "a"), mixed([1, 2, 3], "b")]
    with (
        concurrent.futures.ThreadPoolExecutor(2) as pool,
        batch_thread_busy(server, client),
    ):
        futures = []
        for count, body in enumerate(bodies, 1):  # in order: the first sets the batch's shape
            futures.append(
                pool.submit(client.post, "/v1/models/strict:predict", json={"instances": [body]})
            )
            server.poll_until(lambda n=count: stats(server).queued_tasks == n)
    good, odd = (f.result() for f in futures)
    assert good.status_code == 200 and good.json()["predictions"][0]["count"] == 1
    assert odd.status_code == 400
    assert odd.json()["error"].startswith(
        "Tensors with name 'ids' from different tasks have different shapes and padding is "
        "turned off. Set pad_variable_length_inputs to true"
    )


def test_models_without_a_parameters_file_are_not_batched(
    server: RunningServer, client: httpx.Client
) -> None:
    before = stats(server)
    response = predict(client, "plain", np.ones((2, 2), np.float32))
    assert response.status_code == 200
    assert stats(server).batches_run == before.batches_run


def test_a_bad_parameters_file_fails_the_version_with_tf_servings_message(
    client: httpx.Client,
) -> None:
    status = client.get("/v1/models/bad").json()["model_version_status"][0]
    assert status["state"] == "END"
    assert (
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
        "expected 8" in status["status"]["error_message"]
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--batching_parameters_file={file}"],
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.",
        ),
        (
            ["--enable_batching", "--batching_parameters_file={file}"],
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
            "expected 8",
        ),
        (["--enable_batching", "--batching_length_buckets=8,4"], "--batching_length_buckets"),
    ],
)
def test_the_command_line_refuses_bad_batching_settings(
    tmp_path: Path, repo: Path, flags: list[str], message: str
) -> None:
    file = tmp_path / "batching.txt"
    file.write_text(PARAMS["bad"])
    argv = [
        sys.executable,
        "-m",
        "servoir",
        "serve",
        "--port=0",
        "--rest_api_port=0",
        f"--model_base_path={repo / 'plain'}",
        *(f.format(file=file) for f in flags),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr


def test_batches_show_in_the_metrics(client: httpx.Client) -> None:
    assert predict(client, "mlp", mlp_rows(3, seed=5)).status_code == 200
    text = client.get("/metrics").text
    sizes = [line for line in text.splitlines() if line.startswith("servoir_batch_size_sum")]
    assert any('model="mlp"' in line and float(line.split()[-1]) >= 3 for line in sizes)
    assert 'servoir_batch_queue_depth{model="mlp"} 0.0' in text


def test_kserve_v2_requests_with_binary_tensors_are_batched(
    server: RunningServer, client: httpx.Client, repo: Path
) -> None:
    inputs = mlp_rows(6, seed=6)
    expected = reference(repo, inputs)
    url = server.rest_url.removeprefix("http://")

    def infer(i: int) -> np.ndarray:
        with httpclient.InferenceServerClient(url) as triton:
            x = httpclient.InferInput("x", [1, 784], "FP32")
            x.set_data_from_numpy(inputs[i : i + 1], binary_data=True)
            wanted = [httpclient.InferRequestedOutput("logits", binary_data=True)]
            result = triton.infer("mlp", [x], outputs=wanted)
        return np.asarray(result.as_numpy("logits"))

    before = stats(server)
    with (
        concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool,
        batch_thread_busy(server, client) as first,
    ):
        futures = [pool.submit(infer, i) for i in range(len(inputs))]
        server.poll_until(lambda: stats(server).queued_tasks == len(inputs))
    assert first.result().status_code == 200
    for i, future in enumerate(futures):
        np.testing.assert_allclose(future.result(), expected[i : i + 1], rtol=1e-5, atol=1e-6)
    after = stats(server)
    assert after.batches_run - before.batches_run == 2  # the first request, then all six
    assert after.rows_run - before.rows_run == len(inputs) + 1
