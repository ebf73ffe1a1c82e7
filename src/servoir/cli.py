"""The `servoir` command: `servoir serve [TF Serving flags]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from servoir import __version__, logs
from servoir.batching.options import BatchingConfig, with_platforms
from servoir.batching.options import config_from_flags as batching_from_flags
from servoir.config.flags import build_parser, describe_unknown, parse_flags, refused
from servoir.config.model_config import ModelConfig, read_file
from servoir.config.monitoring import PrometheusConfig, read_monitoring
from servoir.config.platform_config import (
    TENSORFLOW,
    PlatformSettings,
    batching_by_platform,
    per_model_batching,
    read_platform_config,
    session_config,
)
from servoir.config.tensorflow_flags import saved_model_tags, session_threads
from servoir.errors import Code, ServingError
from servoir.frontends.grpc.server import GrpcOptions, parse_channel_arguments
from servoir.frontends.grpc.tf_registration import TENSOR_CONTENT_OPTION
from servoir.frontends.rest.app import RestOptions
from servoir.runtimes.registry import RuntimeOptions
from servoir.server import Server, ServerConfig
from servoir.warmup import WarmupOptions

log = logging.getLogger("servoir")

USAGE = "usage: servoir serve [--flags]   (servoir serve --help lists them)"


class UsageError(Exception):
    """The server cannot start with these flags or files: TF Serving's start failure."""

    def __init__(self, message: str, code: Code = Code.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.code = code


def _models(values: argparse.Namespace) -> list[ModelConfig]:
    if values.model_config_file:
        try:
            return read_file(Path(values.model_config_file))
        except ServingError as e:
            raise UsageError(e.message, e.code) from None
    return _single_model(values)


def _single_model(values: argparse.Namespace) -> list[ModelConfig]:
    name: str = values.model_name
    base: str = values.model_base_path
    env_name = os.environ.get("MODEL_NAME")
    if name == "default" and env_name:
        name = env_name
    if not base and os.environ.get("MODEL_BASE_PATH"):
        base = os.path.join(os.environ["MODEL_BASE_PATH"], name)
    if not base:
        raise UsageError("--model_base_path is required (or set MODEL_BASE_PATH)")
    path = Path(base)
    if not path.is_dir():
        raise UsageError(f"--model_base_path={base}: no such directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"--model_base_path={base}: directory is not readable")
    return [ModelConfig(name, path.resolve())]


def _grpc_options(values: argparse.Namespace) -> GrpcOptions:
    try:
        channel_arguments = parse_channel_arguments(values.grpc_channel_arguments)
    except ValueError as e:
        raise UsageError(f"--grpc_channel_arguments: {e}") from None
    if values.grpc_max_threads < 0:
        raise UsageError("--grpc_max_threads must not be negative")
    tensor_content = values.enable_serialization_as_tensor_content
    return GrpcOptions(
        port=values.port or None,
        bind_address=values.bind_address,
        socket_path=values.grpc_socket_path,
        channel_arguments=channel_arguments,
        # grpc.aio serves every call on the event loop: TF's thread cap becomes a cap on
        # concurrent calls, answered RESOURCE_EXHAUSTED past it as TF's exhausted pool is.
        max_concurrent_rpcs=values.grpc_max_threads or None,
        enable_health=values.enable_grpc_healthcheck_service,
        extra={TENSOR_CONTENT_OPTION: "true"} if tensor_content else {},
    )


def _monitoring(path: str) -> PrometheusConfig:
    if not path:
        return PrometheusConfig()
    try:
        return read_monitoring(Path(path))
    except ServingError as e:
        raise UsageError(e.message, e.code) from None


def _batching(
    values: argparse.Namespace, platforms: dict[str, PlatformSettings]
) -> BatchingConfig | None:
    try:
        config = batching_from_flags(
            values.enable_batching,
            values.batching_parameters_file,
            values.enable_per_model_batching_parameters,
            values.batching_dispatch_when_idle,
            values.batching_length_buckets,
        )
        return with_platforms(
            config,
            batching_by_platform(platforms),
            per_model_batching(platforms),
            values.batching_dispatch_when_idle,
            values.batching_length_buckets,
        )
    except ServingError as e:
        raise UsageError(e.message, e.code) from None


def _platforms(values: argparse.Namespace) -> dict[str, PlatformSettings]:
    if not values.platform_config_file:
        return {}
    try:
        platforms = read_platform_config(Path(values.platform_config_file))
    except ServingError as e:
        raise UsageError(e.message, e.code) from None
    log.info(
        "--platform_config_file configures %s: for those models it replaces the batching, "
        "session, tag and warmup flags",
        ", ".join(platforms) or "no platform",
    )
    return platforms


def _tensorflow(
    values: argparse.Namespace, platforms: dict[str, PlatformSettings], runtime: RuntimeOptions
) -> RuntimeOptions:
    """The TensorFlow settings: from the platform config's entry if it has one (the flags
    are then ignored, as in TF Serving), else from the flags."""
    entry = platforms.get(TENSORFLOW)
    if entry is not None:
        parser = build_parser()  # the flags' defaults: a flag that differs was given
        ignored = [
            f"--{name}"
            for name in TENSORFLOW_FLAGS
            if getattr(values, name) != parser.get_default(name)
        ]
        if ignored:
            log.warning(
                "ignored: the platform config's tensorflow entry replaces %s", ", ".join(ignored)
            )
        return replace(
            runtime,
            saved_model_tags=entry.saved_model_tags,
            tensorflow_session_config=entry.session_config,
        )
    intra, inter = _tensorflow_threads(values)
    file = values.tensorflow_session_config_file
    try:
        config = session_config(
            Path(file) if file else None, intra, inter, values.per_process_gpu_memory_fraction
        )
    except ServingError as e:
        raise UsageError(e.message, e.code) from None
    return replace(
        runtime,
        saved_model_tags=saved_model_tags(values.saved_model_tags),
        tensorflow_intra_op_threads=intra,
        tensorflow_inter_op_threads=inter,
        tensorflow_session_config=config,
    )


# The TensorFlow flags a platform config's tensorflow entry replaces.
TENSORFLOW_FLAGS = (
    "saved_model_tags",
    "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "tensorflow_session_config_file",
    "per_process_gpu_memory_fraction",
)


def _tensorflow_threads(values: argparse.Namespace) -> tuple[int, int]:
    try:
        return session_threads(
            values.tensorflow_session_parallelism,
            values.tensorflow_intra_op_parallelism,
            values.tensorflow_inter_op_parallelism,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None


def config_from_flags(argv: list[str]) -> ServerConfig:
    parsed = parse_flags(argv)
    v = parsed.values
    reason = refused(parsed.unknown)
    if reason is not None:
        raise UsageError(reason, Code.UNIMPLEMENTED)
    for arg in parsed.unknown:
        print(describe_unknown(arg), file=sys.stderr)
    if v.port and v.rest_api_port and v.port == v.rest_api_port:
        raise UsageError("--port and --rest_api_port must differ")
    platforms = _platforms(v)
    return ServerConfig(
        models=_models(v),
        model_config_file=Path(v.model_config_file) if v.model_config_file else None,
        model_config_file_poll_wait_seconds=v.model_config_file_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=v.allow_version_labels_for_unavailable_models,
        prometheus=_monitoring(v.monitoring_config_file),
        drain_timeout_seconds=v.drain_timeout_seconds,
        request_log_rotate_bytes=v.request_log_rotate_bytes,
        log_format=v.log_format,
        access_log=v.access_log,
        max_num_load_retries=v.max_num_load_retries,
        load_retry_interval_s=v.load_retry_interval_micros / 1e6,
        # TF Serving's 0 means "off"; inside Servoir 0 means "any free port".
        rest_port=v.rest_api_port or None,
        bind_address=v.bind_address,
        grpc=_grpc_options(v),
        rest=RestOptions(
            max_body_bytes=v.max_request_body_bytes,
            timeout_s=v.rest_api_timeout_in_ms / 1000.0,
            enable_cors=v.rest_api_enable_cors_support,
        ),
        runtime=_tensorflow(
            v,
            platforms,
            RuntimeOptions(
                onnx_intra_op_threads=v.onnx_intra_op_threads,
                onnx_inter_op_threads=v.onnx_inter_op_threads,
                inline_run_max_seconds=v.inline_run_max_us / 1e6,
                torch_intra_op_threads=v.torch_intra_op_threads,
                disable_python_models=v.disable_python_models,
            ),
        ),
        enable_signature_method_name_check=v.enable_signature_method_name_check,
        file_system_poll_wait_seconds=v.file_system_poll_wait_seconds,
        version_quiet_seconds=v.version_quiet_seconds,
        warmup=WarmupOptions(v.enable_model_warmup, max(v.num_request_iterations_for_warmup, 1)),
        platform_warmup={
            runtime: WarmupOptions(entry.warmup, entry.warmup_iterations)
            for runtime, entry in platforms.items()
        },
        num_load_threads=v.num_load_threads,
        enable_model_control=v.enable_model_control,
        batching=_batching(v, platforms),
    )


async def _serve(config: ServerConfig) -> None:
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second signal: the operator wants out now
            log.warning("%s again: exiting without draining", sig.name)
            os._exit(1)
        log.info("%s: draining (send it again to exit at once)", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    # Start-up loads every model before the listeners open (minutes, with retries): a
    # signal meanwhile ends it, as nothing was served yet.
    starting = asyncio.ensure_future(server.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        log.info("stopped during start-up, before serving")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        return
    stopping.cancel()
    starting.result()  # a start that failed (a port in use ...) raises here
    await stop.wait()
    await server.drain()


def _leave(status: int) -> int:
    """`status`, without waiting for threads still running a model or a load: such a call
    cannot be interrupted, and Python would wait for it at exit, past the drain timeout."""
    busy = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    for thread in busy:
        thread.join(0.1)  # idle pool threads end at once after the pools' shutdown
    busy = [t for t in busy if t.is_alive()]
    if not busy:
        return status
    log.warning("exiting while %d thread(s) still run a model or a load", len(busy))
    logging.shutdown()
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(status)


def _run(config: ServerConfig) -> None:
    try:
        import uvloop

        uvloop.run(_serve(config))
    except ImportError:  # uvloop is not built for every platform
        asyncio.run(_serve(config))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "serve":
        args = args[1:]
    elif not args[0].startswith("-"):
        print(f"servoir: unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    if "--version" in args:
        print(f"Servoir ModelServer: {__version__}")
        return 0
    if "-h" in args or "--help" in args:
        build_parser().print_help()
        return 0
    values = parse_flags(args).values
    if values.log_format not in ("text", "json"):
        print("servoir: error: --log_format must be text or json", file=sys.stderr)
        return 2
    logs.configure(values.log_level, values.log_format)
    try:
        config = config_from_flags(args)
    except UsageError as e:
        # TF Serving's words and exit status (-1) for a server that cannot start.
        print(f"Failed to start server. Error: {e.code.name}: {e}", file=sys.stderr)
        return 255
    _run(config)
    return _leave(0)
