"""Wiring: executors, manager, source, service and front ends, with start-up and shutdown.

Everything stateful is created here and passed down; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn

from servoir.batching.options import BatchingConfig
from servoir.batching.scheduler import BatchScheduler
from servoir.batching.servable import Batching
from servoir.config.model_config import ModelConfig, file_configs, parse_text
from servoir.config.monitoring import PrometheusConfig
from servoir.core.manager import Manager, Transition
from servoir.core.states import State
from servoir.errors import Code, ServingError
from servoir.frontends.grpc.server import (
    GrpcOptions,
    GrpcServer,
    Registration,
    start_grpc_server,
)
from servoir.frontends.grpc.tf_registration import tf_serving_registration
from servoir.frontends.rest.app import Mount, RestApp, RestOptions
from servoir.frontends.rest.metrics_api import MetricsApi
from servoir.frontends.rest.tf_api import TfRestApi
from servoir.frontends.v2.api import V2Options
from servoir.frontends.v2.grpc_service import v2_registration
from servoir.frontends.v2.rest_api import V2RestApi
from servoir.logs import AccessLog
from servoir.metrics import Metrics
from servoir.repository import Repository
from servoir.request_log import RequestLogs
from servoir.runtimes.registry import RuntimeContext, RuntimeOptions
from servoir.service import Service
from servoir.warmup import WarmupOptions

log = logging.getLogger("servoir.server")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    models: Sequence[ModelConfig]
    rest_port: int | None = 8501  # None: REST off; 0: any free port
    bind_address: str = "0.0.0.0"
    grpc: GrpcOptions = field(default_factory=GrpcOptions)
    rest: RestOptions = field(default_factory=RestOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    file_system_poll_wait_seconds: float = 1.0  # 0: scan once; < 0: never
    version_quiet_seconds: float = 2.0  # a new version's files must be this old to load
    warmup: WarmupOptions = field(default_factory=WarmupOptions)
    # --platform_config_file: runtimes whose entry sets their warmup (instead of `warmup`).
    platform_warmup: Mapping[str, WarmupOptions] = field(default_factory=dict)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    drain_timeout_seconds: float = 30.0
    request_log_rotate_bytes: int = 64 * 1024 * 1024
    log_format: str = "text"  # text | json (the access log follows it)
    access_log: bool = True
    num_load_threads: int = 0  # 0: one per core, at least 2
    num_inference_threads: int = 0  # 0: one per core
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0  # 0: read once
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    # KServe V2 repository extension (load/unload): changes what is served, so opt-in.
    enable_model_control: bool = False
    batching: BatchingConfig | None = None  # None: --enable_batching is off
    # Classify/Regress need matching signature method_names (TF2 exports write predict).
    enable_signature_method_name_check: bool = False


class _Uvicorn(uvicorn.Server):  # type: ignore[misc]
    """uvicorn without its own signal handling (the server decides how to shut down), and
    with an event for "listening" so start-up can await it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        cores = os.cpu_count() or 1
        self._load_executor = ThreadPoolExecutor(
            config.num_load_threads or max(cores, 2), thread_name_prefix="servoir-load"
        )
        self._inference_executor = ThreadPoolExecutor(
            config.num_inference_threads or cores, thread_name_prefix="servoir-run"
        )
        self.manager = Manager(
            self._load_executor,
            max_load_retries=config.max_num_load_retries,
            load_retry_interval_s=config.load_retry_interval_s,
        )
        self.metrics = Metrics()
        self.manager.add_listener(self._on_transition)
        self.service = Service(
            self.manager,
            metrics=self.metrics,
            check_signature_method_names=config.enable_signature_method_name_check,
        )
        runtime = config.runtime
        batching: Batching | None = None
        self.batch_scheduler: BatchScheduler | None = None
        if config.batching is not None:
            threads = config.batching.threads
            self.batch_scheduler = BatchScheduler(
                threads, when_idle=config.batching.dispatch_when_idle
            )
            batching = Batching(self.batch_scheduler, config.batching, self.metrics)
            runtime = _share_cores(runtime, max(1, cores // threads), config.batching)
        self._context = RuntimeContext(self._inference_executor, runtime)
        self.repository = Repository(
            self.manager,
            self._context,
            allow_version_labels_for_unavailable_models=(
                config.allow_version_labels_for_unavailable_models
            ),
            version_quiet_seconds=config.version_quiet_seconds,
            warmup=config.warmup,
            platform_warmup=config.platform_warmup,
            batching=batching,
        )
        self.service.set_control(self.repository)
        self.access = AccessLog(config.log_format, config.access_log)
        self.request_logs = RequestLogs(config.request_log_rotate_bytes)
        self.repository.add_config_listener(self.request_logs.configure)
        self.service.add_observer(self.request_logs)
        self._tasks: list[asyncio.Task[None]] = []
        self._poll_task: asyncio.Task[None] | None = None
        self._rest_task: asyncio.Task[None] | None = None
        self._rest: _Uvicorn | None = None
        self.rest_port: int | None = None
        self._grpc: GrpcServer | None = None
        self.grpc_port: int | None = None
        self.started = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.repository.apply(self.config.models)
        except ServingError as e:
            # TF Serving exits here; Servoir serves what loaded and reports the rest in the
            # status of the models concerned.
            log.error("%s", e.message)
        if self.config.file_system_poll_wait_seconds > 0:
            self._poll_task = asyncio.create_task(self._poll_loop())
        if self.access.enabled:
            self._tasks.append(asyncio.create_task(self._flush_access_log()))
        if self.config.model_config_file and self.config.model_config_file_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(self._config_poll_loop()))
        grpc_options = self.config.grpc
        if grpc_options.port is not None or grpc_options.socket_path:
            self._grpc = await start_grpc_server(
                grpc_options, self._grpc_registrations(), self.service.server_ready, self.access
            )
            self.grpc_port = self._grpc.port
        if self.config.rest_port is not None:
            await self._start_rest(self.config.rest_port)
        self.started.set()

    async def _poll_loop(self) -> None:
        period = self.config.file_system_poll_wait_seconds
        while True:
            await asyncio.sleep(period)
            try:
                self.repository.poll()
            except Exception:
                log.exception("file system poll failed")

    async def _flush_access_log(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.access.flush()

    async def _config_poll_loop(self) -> None:
        """Re-read --model_config_file; a changed, valid file replaces the model set. A
        refused file is tried again at every poll, as TF Serving does (a label refused
        before its version loaded takes effect once it has)."""
        path = self.config.model_config_file
        assert path is not None
        period = self.config.model_config_file_poll_wait_seconds
        applied = _read_text(path)
        while True:
            await asyncio.sleep(period)
            text = _read_text(path)
            if text is None or text == applied:
                continue
            try:
                running = bool(self.repository.configs)
                configs = file_configs(parse_text(text, str(path)), replacing=running)
                if configs is not None:
                    await self.repository.apply(configs)
            except ServingError as e:
                log.error("model config file %s not applied: %s", path, e.message)
                continue
            applied = text
            if configs is None:
                log.info("Taking no action for empty config.")
            else:
                log.info("applied model config file %s", path)

    def _on_transition(self, event: Transition) -> None:
        name, version = event.id.name, str(event.id.version)
        self.metrics.version_state.labels(name, version).set(int(event.state))
        took = f" in {event.seconds:.3f}s" if event.seconds is not None else ""
        if event.state is State.AVAILABLE:
            if event.seconds is not None:
                self.metrics.load_duration.labels(name).observe(event.seconds)
            log.info("model %s version %s is AVAILABLE (loaded%s)", name, version, took)
        elif event.state is State.END and event.error is not None:
            self.metrics.version_failed.labels(name, version).set(1)
            log.error("model %s version %s failed: %s", name, version, event.error.message)
        elif event.state is State.END:
            log.info("model %s version %s unloaded%s", name, version, took)
        elif event.state is State.LOADING:
            log.info("loading model %s version %s", name, version)

    def _grpc_registrations(self) -> list[Registration]:
        """Every gRPC protocol served on the gRPC port."""
        return [
            tf_serving_registration(self.service, self.config.grpc, self.metrics),
            v2_registration(self.service, V2Options(self.config.enable_model_control)),
        ]

    def _rest_mounts(self) -> list[Mount]:
        """Every API served on the REST port, by path prefix."""
        v2 = V2Options(self.config.enable_model_control)
        prometheus = self.config.prometheus
        return [  # most traffic first: mounts are tried in order
            TfRestApi(self.service, self.config.rest, self.metrics),
            V2RestApi(self.service, self.config.rest, v2),
            MetricsApi(self.metrics, prometheus.path if prometheus.enable else None),
        ]

    async def _start_rest(self, port: int) -> None:
        app = RestApp(self._rest_mounts(), self.config.rest, self.access)
        sock = _bind(self.config.bind_address, port)
        self.rest_port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            app,
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,  # keep our logging set-up (uvicorn's would re-enable loggers)
            proxy_headers=False,  # no use for X-Forwarded-*; its middleware runs per request
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=self.config.drain_timeout_seconds,
        )
        self._rest = _Uvicorn(uv_config)
        serving = asyncio.create_task(self._rest.serve(sockets=[sock]))
        self._rest_task = serving
        self._tasks.append(serving)
        listening = asyncio.create_task(self._rest.listening.wait())
        await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
        if not self._rest.listening.is_set():
            listening.cancel()
            serving.result()  # raises why it stopped
            raise ServingError(Code.UNAVAILABLE, "REST server stopped during start-up")
        log.info("Exporting HTTP/REST API at:%s:%d ...", self.config.bind_address, self.rest_port)

    async def drain(self) -> None:
        """Graceful shutdown: readiness turns false, listeners close, in-flight and queued
        requests finish (bounded by drain_timeout_seconds), then every model unloads."""
        timeout = self.config.drain_timeout_seconds
        self.service.start_draining()
        log.info("draining: not ready; waiting up to %.0fs for in-flight requests", timeout)
        waits: list[asyncio.Task[None]] = []
        if self._rest is not None and self._rest_task is not None:
            self._rest.should_exit = True
            waits.append(self._rest_task)
        if self._grpc is not None:
            waits.append(asyncio.create_task(self._grpc.stop(grace=timeout)))
            self._grpc = None
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            if pending:
                log.warning("drain timeout: %d listener(s) still busy", len(pending))
        try:
            await asyncio.wait_for(self.stop(), timeout=max(timeout, 1.0))
        except TimeoutError:
            log.warning("drain timeout: models still in use were not unloaded")
        log.info("drained")

    async def stop(self) -> None:
        if self._rest is not None:
            self._rest.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace=5.0)
        if self._poll_task is not None:
            self._poll_task.cancel()
        for task in self._tasks:
            if task is not self._rest_task:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.manager.stop()
        if self.batch_scheduler is not None:
            await self.batch_scheduler.stop()
        self.request_logs.close()
        self.access.flush()
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        self._inference_executor.shutdown(wait=False, cancel_futures=True)


def _share_cores(
    runtime: RuntimeOptions, intra_op_threads: int, batching: BatchingConfig
) -> RuntimeOptions:
    """With batching, up to num_batch_threads batches run at once: runtimes that batch and
    are left at "one thread per core" get cores // num_batch_threads each, so batch threads
    x intra-op threads stays within the cores (docs/batching.md, thread model)."""

    def share(platform: str, configured: int) -> int:
        return configured or (intra_op_threads if batching.batches(platform) else 0)

    return replace(
        runtime,
        onnx_intra_op_threads=share("onnx", runtime.onnx_intra_op_threads),
        torch_intra_op_threads=share("pytorch", runtime.torch_intra_op_threads),
        tensorflow_intra_op_threads=share("tensorflow", runtime.tensorflow_intra_op_threads),
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError as e:
        log.error("cannot read model config file %s: %s", path, e.strerror)
        return None
