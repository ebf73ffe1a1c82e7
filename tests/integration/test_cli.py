"""The `servoir` command as operators run it: flags, errors, JSON logs, SIGTERM drain."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.models import EXAMPLES, slow_model

SERVOIR = [sys.executable, "-m", "servoir"]


class Process:
    """`servoir serve` in a subprocess; started() waits for its "Exporting" log line."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*SERVOIR, "serve", f"--rest_api_port={self.port}", "--port=0", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            if "Exporting HTTP/REST API" in line:
                self._ready.set()
        self._ready.set()

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        """Block until the server logged a line containing `text` (woken by each line)."""
        with self._new_line:
            found = self._new_line.wait_for(
                lambda: any(text in line for line in self.lines), timeout
            )
        assert found, f"no log line with {text!r}"

    def started(self, timeout: float = 60) -> Process:
        assert self._ready.wait(timeout), "server did not start"
        assert self.proc.poll() is None, "".join(self.lines)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._reader.join(10)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()


def test_help_lists_the_flags() -> None:
    out = subprocess.run([*SERVOIR, "serve", "--help"], capture_output=True, text=True, check=True)
    for flag in (
        "--model_base_path",
        "--rest_api_port",
        "--rest_api_timeout_in_ms",
        "--model_config_file",
        "--drain_timeout_seconds",
        "--log_format",
    ):
        assert flag in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model_base_path=/nonexistent/models"],
            "INVALID_ARGUMENT: --model_base_path=/nonexistent/models: no such directory",
        ),
        ([], "INVALID_ARGUMENT: --model_base_path is required (or set MODEL_BASE_PATH)"),
        (["--model_config_file=/nonexistent.config"], None),
        (
            [f"--model_base_path={EXAMPLES}", "--ssl_config_file=/etc/ssl.config"],
            "UNIMPLEMENTED: --ssl_config_file: TLS is not implemented yet; terminate TLS in "
            "front of Servoir (an ingress, a load balancer or a sidecar)",
        ),
    ],
)
def test_a_server_that_cannot_start_says_so_as_tf_serving(
    args: list[str], message: str | None
) -> None:
    # TF Serving: "Failed to start server. Error: <status>" and exit status -1 (255).
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_NAME", "MODEL_BASE_PATH")}
    out = subprocess.run([*SERVOIR, "serve", *args], capture_output=True, text=True, env=env)
    assert out.returncode == 255
    prefix = "Failed to start server. Error: "
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(prefix)
    if message is not None:
        assert out.stderr == prefix + message + "\n"


def test_a_bad_model_config_file_keeps_its_status_code(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "m" base_path: "/a" }'
        ' config { name: "m" base_path: "/b" } }'
    )
    out = subprocess.run(
        [*SERVOIR, "serve", f"--model_config_file={config}"], capture_output=True, text=True
    )
    assert out.returncode == 255
    assert out.stderr == (
        "Failed to start server. Error: INVALID_ARGUMENT: "
        "Illegal to list model m multiple times in config list\n"
    )


def test_docker_environment_variables_and_json_logs(processes: list[Process]) -> None:
    os.environ["MODEL_NAME"] = "mlp"
    os.environ["MODEL_BASE_PATH"] = str(EXAMPLES)
    try:
        server = Process("--log_format=json")
    finally:
        del os.environ["MODEL_NAME"], os.environ["MODEL_BASE_PATH"]
    processes.append(server)
    server.started()
    body = {"instances": [[0.3141592] * 784]}
    r = httpx.post(server.url + "/v1/models/mlp:predict", json=body)
    assert r.status_code == 200
    assert len(r.json()["predictions"][0]) == 10
    v2 = {"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]}
    assert httpx.post(server.url + "/v2/models/mlp/infer", json=v2).status_code == 200
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    server._reader.join(10)
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "servoir.access"]
    predict = [r for r in access if r.get("route") == "/v1/models/mlp:predict"]
    assert predict[0]["model"] == "mlp" and predict[0]["version"] == "2"
    assert predict[0]["status"] == 200 and predict[0]["latency_ms"] > 0
    (infer,) = [r for r in access if r.get("route") == "/v2/models/mlp/infer"]
    assert (infer["protocol"], infer["model"], infer["version"]) == ("v2_rest", "mlp", "2")
    # A value no timestamp or latency can contain (ms resolution): never the payload.
    assert "0.3141592" not in "".join(server.lines)
    loaded = [r for r in records if "AVAILABLE" in r["message"]]
    assert loaded and "loaded in" in loaded[0]["message"]


def inflight(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("servoir_inflight_requests{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_inflight(server: Process, count: int) -> None:
    """Until the server's own gauge shows `count` requests in flight (bounded: 60 s)."""
    deadline = time.monotonic() + 60
    while inflight(server.url) < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_sigterm_drains_in_flight_requests_then_exits_0(
    tmp_path: Path, processes: list[Process]
) -> None:
    slow_model(tmp_path / "slow" / "1", layers=8, width=1024, rows=8192)
    server = Process(
        f"--model_base_path={tmp_path / 'slow'}", "--model_name=slow", "--drain_timeout_seconds=60"
    )
    processes.append(server)
    server.started()
    results: list[int] = []
    body = {"instances": [[0.01] * 1024]}

    def request() -> None:
        r = httpx.post(server.url + "/v1/models/slow:predict", json=body, timeout=120)
        results.append(r.status_code)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    # All four in flight (the server's own gauge) before the signal: a request still on its
    # way when draining starts is not "in flight" and may be refused.
    wait_inflight(server, len(threads))
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(120)
    assert results == [200, 200, 200, 200]
    assert server.proc.wait(60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/v1/models/slow")
    server._reader.join(10)
    text = "".join(server.lines)
    assert "draining" in text and "drained" in text


def test_second_signal_exits_at_once(tmp_path: Path, processes: list[Process]) -> None:
    slow_model(tmp_path / "slow" / "1", layers=8, width=1024, rows=8192)
    server = Process(
        f"--model_base_path={tmp_path / 'slow'}", "--model_name=slow", "--drain_timeout_seconds=600"
    )
    processes.append(server)
    server.started()
    body = {"instances": [[0.01] * 1024]}
    cut: list[httpx.HTTPError] = []

    def send() -> None:
        try:
            httpx.post(server.url + "/v1/models/slow:predict", json=body, timeout=120)
        except httpx.HTTPError as e:  # the forced exit cuts these off: the point of the test
            cut.append(e)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    wait_inflight(server, 1)
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_line("draining")  # signals of one kind merge until the first is handled
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 1
    for t in threads:
        t.join(120)
    assert cut, "the forced exit answered every request"


SLEEPER = """
import time

class Model:
    signature = {
        "inputs": [{"name": "x", "dtype": "float"}],
        "outputs": [{"name": "x", "dtype": "float"}],
    }

    def load(self, path):
        time.sleep(float((path / "load_s").read_text()))

    def predict(self, inputs):
        time.sleep(600)  # a run that never ends in time: it cannot be interrupted
        return inputs
"""


def sleeper(base: Path, load_s: float) -> Path:
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.py").write_text(SLEEPER)
    (base / "1" / "load_s").write_text(str(load_s))
    return base


def test_a_signal_during_start_up_exits_without_waiting_for_the_loads(
    tmp_path: Path, processes: list[Process]
) -> None:
    server = Process(f"--model_base_path={sleeper(tmp_path / 'm', 600)}", "--model_name=m")
    processes.append(server)
    server.wait_for_line("loading model m version 1")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    server._reader.join(10)
    assert "stopped during start-up" in "".join(server.lines)


def test_the_drain_timeout_bounds_the_exit_even_with_a_run_that_never_ends(
    tmp_path: Path, processes: list[Process]
) -> None:
    server = Process(
        f"--model_base_path={sleeper(tmp_path / 'm', 0)}",
        "--model_name=m",
        "--drain_timeout_seconds=1",
    )
    processes.append(server)
    server.started()

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut off by the exit: the point
            httpx.post(server.url + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=60)

    stuck = threading.Thread(target=send, daemon=True)
    stuck.start()
    wait_inflight(server, 1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0  # the run would take 600 s
    server._reader.join(10)
    assert "still run a model" in "".join(server.lines)
