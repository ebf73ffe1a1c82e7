"""Operations against a real server: metrics, request logs that replay as warmup files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servoir.config.model_config import ModelConfig, from_message, parse_text
from servoir.config.monitoring import read_monitoring
from servoir.frontends.grpc.server import GrpcOptions
from servoir.runtimes.onnx import make_loader
from servoir.runtimes.registry import RuntimeContext
from servoir.server import ServerConfig
from servoir.tfrecord import read_records
from servoir.warmup import WarmupLoader, WarmupOptions
from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer
from tests.models import scale_model

ONE = {"instances": [[1.0, 2.0]]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("ops")
    scale_model(root / "m" / "1", 2.0)
    logs = root / "logs" / "m"
    config = f"""
    model_config_list {{ config {{
      name: "m" base_path: "{root / "m"}"
      logging_config {{
        log_collector_config {{ type: "file" filename_prefix: "{logs}" }}
        sampling_config {{ sampling_rate: 1.0 }}
      }}
    }} }}
    """
    running = RunningServer(
        ServerConfig(
            models=from_message(parse_text(config, "test")),
            rest_port=0,
            bind_address="127.0.0.1",
            grpc=GrpcOptions(port=None),
            file_system_poll_wait_seconds=0,
            prometheus=read_monitoring(SHARED_TESTDATA / "monitoring_config.txt"),
        )
    ).start()
    yield running
    running.stop()


def test_metrics_move_per_version_and_protocol(server: RunningServer) -> None:
    url = server.rest_url
    before = samples(httpx.get(url + "/metrics").text)
    for _ in range(3):
        assert httpx.post(url + "/v1/models/m:predict", json=ONE).status_code == 200
    assert httpx.post(url + "/v1/models/m:predict", json={"instances": [[1.0]]}).status_code == 400
    after = samples(httpx.get(url + "/metrics").text)
    labels = {"model": "m", "version": "1", "signature": "serving_default", "protocol": "tf_rest"}
    ok = value(after, "servoir_requests_total", code="OK", **labels)
    assert ok - value(before, "servoir_requests_total", code="OK", **labels) == 3
    bad = {"model": "m", "version": "", "signature": "", "protocol": "tf_rest"}
    assert value(after, "servoir_requests_total", code="INVALID_ARGUMENT", **bad) >= 1
    count = value(after, "servoir_request_duration_seconds_count", **labels)
    assert count - value(before, "servoir_request_duration_seconds_count", **labels) == 3
    assert value(after, "servoir_model_version_state", model="m", version="1") == 30
    assert value(after, "servoir_inflight_requests", model="m") == 0
    assert value(after, "servoir_model_load_duration_seconds_count", model="m") == 1
    build = [k for k in after if k[0] == "servoir_build_info"]
    assert build and after[build[0]] == 1


def test_tf_serving_metrics_at_the_monitoring_path(server: RunningServer) -> None:
    path = "/monitoring/prometheus/metrics"
    httpx.post(server.rest_url + "/v1/models/m:predict", json=ONE)
    httpx.post(server.rest_url + "/v1/models/m:predict", json={"instances": "x"})
    r = httpx.get(server.rest_url + path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# HELP" not in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(lines[':tensorflow:serving:request_count{model_name="m",status="OK"}']) >= 1
    assert (
        int(lines[':tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"}'])
        >= 1
    )
    count = (
        ':tensorflow:serving:request_latency_count{model_name="m",API="predict",entrypoint="REST"}'
    )
    assert int(lines[count]) >= 1
    # Bucket bounds as TF prints them (six significant digits, no trailing ".0").
    assert '{model_name="m",API="predict",entrypoint="REST",le="10"}' in text
    assert '{model_name="m",API="predict",entrypoint="REST",le="104.976"}' in text
    # TF's batching metrics are declared even with batching off, as in TF Serving.
    assert "# TYPE :tensorflow:serving:batching_session:wrapped_run_count counter" in text
    # The model's run alone; runtime is the platform for models other than TensorFlow's.
    runtime = (
        ':tensorflow:serving:runtime_latency_count{model_name="m",API="Predict",runtime="onnx"}'
    )
    assert int(lines[runtime]) >= 1


def test_request_logs_are_written_and_replay_as_warmup(
    server: RunningServer, tmp_path: Path
) -> None:
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    assert server.server is not None
    logs = server.server.request_logs
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    for row in x:
        httpx.post(server.rest_url + "/v1/models/m:predict", json={"instances": [row.tolist()]})
    logs.flush()
    prefix = Path(server.server.repository.configs[0].logging.log_collector_config.filename_prefix)
    files = sorted(prefix.parent.glob("m-*.tfrecord"))
    assert files
    with files[-1].open("rb") as f:
        records = [prediction_log_pb2.PredictionLog.FromString(r) for r in read_records(f)]
    last = records[-4:]
    assert [r.log_metadata.model_spec.name for r in last] == ["m"] * 4
    assert last[0].log_metadata.model_spec.version.value == 1
    assert last[0].log_metadata.sampling_config.sampling_rate == 1.0
    got = [list(r.predict_log.request.inputs["x"].float_val) for r in last]
    assert got == x.tolist()
    assert list(last[0].predict_log.response.outputs["y"].float_val) == [0.0, 2.0]
    sidecar = [json.loads(line) for line in Path(f"{files[-1]}.jsonl").read_text().splitlines()]
    assert sidecar[-1]["model"] == "m" and sidecar[-1]["latency_ms"] >= 0
    # the log is a warmup file for the next version as it is
    version = scale_model(tmp_path / "next" / "1", 3.0)
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(files[-1].read_bytes())
    with ThreadPoolExecutor(1) as executor:
        inner = make_loader("m", 1, version, RuntimeContext(executor))
        servable = WarmupLoader(inner, version, WarmupOptions()).load()
        servable.close()


def test_grpc_requests_are_counted_and_readiness_flips_when_draining(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    services = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    tf = pytest.importorskip("tensorflow")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    scale_model(tmp_path / "m" / "1", 2.0)
    running = RunningServer(
        ServerConfig(
            models=[ModelConfig("m", tmp_path / "m")],
            rest_port=0,
            bind_address="127.0.0.1",
            grpc=GrpcOptions(port=0, bind_address="127.0.0.1", enable_health=True),
            file_system_poll_wait_seconds=0,
            prometheus=read_monitoring(SHARED_TESTDATA / "monitoring_config.txt"),
        )
    ).start()
    try:
        assert running.server is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((1, 2), np.float32)))
        services.PredictionServiceStub(channel).Predict(request, timeout=10)
        found = samples(httpx.get(running.rest_url + "/metrics").text)
        labels = {"model": "m", "version": "1", "signature": "serving_default"}
        assert value(found, "servoir_requests_total", code="OK", protocol="tf_grpc", **labels) == 1
        tf_text = httpx.get(running.rest_url + "/monitoring/prometheus/metrics").text
        count = (
            ':tensorflow:serving:request_latency_count{model_name="m",API="Predict",'
            'entrypoint="GRPC"} 1'
        )
        assert count in tf_text

        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "tensorflow.serving.PredictionService", "PredictionService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        assert httpx.get(running.rest_url + "/v2/health/ready").status_code == 200
        running.call(running.server.service.start_draining)
        assert httpx.get(running.rest_url + "/v2/health/ready").status_code == 503
        assert httpx.get(running.rest_url + "/v2/health/live").status_code == 200
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        channel.close()
    finally:
        running.stop()
