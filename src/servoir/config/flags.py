"""TensorFlow Serving's command-line flags (contract section 3), parsed the TF way.

`--name=value` and `--name value` both work; booleans also take a bare `--flag`. Unknown
arguments are reported and ignored, as tensorflow_model_server does, so existing command
lines keep working.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from servoir.config.lifecycle_flags import add_lifecycle_flags
from servoir.config.tensorflow_flags import add_tensorflow_flags


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(parser: argparse._ActionsContainer, name: str, default: object, help: str) -> None:
    if isinstance(default, bool):
        parser.add_argument(
            f"--{name}", type=parse_bool, nargs="?", const=True, default=default, help=help
        )
    else:
        parser.add_argument(f"--{name}", type=type(default), default=default, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servoir serve",
        description="Serve a model repository over TensorFlow Serving's REST and gRPC APIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    f = parser.add_argument_group("models")
    _flag(f, "model_name", "default", "name of the model, when serving one model")
    _flag(
        f,
        "model_base_path",
        "",
        "directory of the model's versions (<base>/<int version>/); "
        "falls back to $MODEL_BASE_PATH/$MODEL_NAME like TF Serving's Docker image",
    )
    _flag(
        f,
        "file_system_poll_wait_seconds",
        1.0,
        "seconds between scans for new versions; 0 scans once, < 0 never",
    )
    _flag(
        f,
        "enable_model_control",
        False,
        "serve the KServe V2 model repository extension (index, load, unload); "
        "off by default because it changes what the server serves",
    )
    g = parser.add_argument_group("network")
    _flag(g, "port", 8500, "gRPC port: TF Serving's and KServe V2's gRPC APIs (0 turns TCP off)")
    _flag(g, "grpc_socket_path", "", "also serve gRPC on this Unix socket (unix:<path>)")
    _flag(
        g,
        "grpc_channel_arguments",
        "",
        "gRPC server channel arguments, k=v,k2=v2 (integer values are passed as integers)",
    )
    _flag(
        g,
        "grpc_max_threads",
        0,
        "most gRPC calls served at once; more get RESOURCE_EXHAUSTED (grpc.aio has no "
        "thread pool, so this caps concurrent RPCs; 0: no cap)",
    )
    _flag(
        g,
        "enable_grpc_healthcheck_service",
        False,
        "serve grpc.health.v1.Health: SERVING while the server is ready",
    )
    _flag(
        g,
        "enable_serialization_as_tensor_content",
        False,
        "gRPC Predict answers in tensor_content instead of the typed *_val fields",
    )
    _flag(g, "rest_api_port", 8501, "REST port (0 turns REST off)")
    _flag(g, "bind_address", "0.0.0.0", "address both APIs listen on")
    _flag(g, "rest_api_timeout_in_ms", 30000, "REST predict timeout; expiry answers 504")
    _flag(g, "rest_api_enable_cors_support", False, "add CORS headers to REST answers")
    _flag(
        g,
        "max_request_body_bytes",
        64 * 1024 * 1024,
        "largest REST request body (after gzip); larger ones get 413",
    )
    r = parser.add_argument_group("runtimes")
    _flag(
        r,
        "onnx_intra_op_threads",
        1,
        "onnxruntime intra-op threads per session (0: one per core); parallelism comes from "
        "running requests side by side on the inference executor",
    )
    _flag(r, "onnx_inter_op_threads", 1, "onnxruntime inter-op threads per model")
    _flag(
        r,
        "inline_run_max_us",
        500,
        "runs measured faster than this execute on the event loop instead of a thread",
    )
    _flag(r, "num_load_threads", 0, "threads that load models (0: one per core, at least 2)")
    _flag(
        r,
        "torch_intra_op_threads",
        0,
        "PyTorch intra-op threads, process-wide (0: one per core; see docs/runtimes.md)",
    )
    _flag(
        r,
        "disable_python_models",
        False,
        "refuse to load Python models (model.py): serving one runs code from the model "
        "repository; such versions end with an error",
    )
    add_batching_flags(parser)
    o = parser.add_argument_group("other")
    _flag(o, "log_level", "info", "debug, info, warning or error")
    _flag(o, "log_format", "text", "text (human-readable) or json (one JSON object a line)")
    _flag(o, "access_log", True, "log one line per request (never the payload)")
    _flag(
        o,
        "monitoring_config_file",
        "",
        "TF Serving MonitoringConfig: serves TF's metric names at its prometheus path",
    )
    _flag(
        o,
        "drain_timeout_seconds",
        30.0,
        "on SIGTERM/SIGINT, how long in-flight requests may take before exit",
    )
    add_lifecycle_flags(parser, _flag)
    add_tensorflow_flags(parser, _flag)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def add_batching_flags(parser: argparse.ArgumentParser) -> None:
    """TF Serving's batching flags, then Servoir's additions (docs/batching.md)."""
    b = parser.add_argument_group("batching")
    _flag(b, "enable_batching", False, "batch requests to each model (TF Serving's batching)")
    _flag(
        b,
        "batching_parameters_file",
        "",
        "text BatchingParameters (max_batch_size, batch_timeout_micros, ...); "
        "needs --enable_batching",
    )
    _flag(
        b,
        "enable_per_model_batching_parameters",
        False,
        "read <version>/batching_params.pbtxt; models without it are not batched",
    )
    _flag(
        b,
        "batching_dispatch_when_idle",
        True,
        "Servoir: run a waiting batch at once when a batch thread would otherwise idle, "
        "free threads sharing the waiting rows (false: wait for batch_timeout_micros and "
        "take whole batches, as TF Serving does)",
    )
    _flag(
        b,
        "batching_length_buckets",
        "",
        "Servoir: batch requests of similar length (dim 1) together: 'auto' (powers of "
        "two), bucket bounds such as 16,32,64,128, or 'nearest' (each batch: the oldest "
        "request and the waiting ones closest to it in length); empty: off",
    )


# TensorFlow Serving flags that Servoir does not implement, and why: named when given, then
# ignored like any unknown argument.
UNSUPPORTED_TF_FLAGS = {
    "enable_profiler": "no profiler service",
    "use_alts_credentials": "no ALTS",
    "rest_api_num_threads": "the REST server is asynchronous",
    "num_unload_threads": "unloads use the --num_load_threads pool",
    "flush_filesystem_caches": "not implemented",
    "remove_unused_fields_from_bundle_metagraph": "not implemented",
    "xla_cpu_compilation_enabled": "XLA is not set up",
    "xla_gpu_compilation_enabled": "XLA is not set up",
    "mixed_precision": "not implemented",
    "thread_pool_factory_config_file": "not implemented",
    "skip_initialize_tpu": "no TPU support",
    "prefer_tflite_model": "no TFLite runtime",
    "use_tflite_model": "no TFLite runtime",
    "num_tflite_pools": "no TFLite runtime",
    "num_tflite_interpreters": "no TFLite runtime",
    "num_tflite_interpreters_per_pool": "no TFLite runtime",
}


# TensorFlow Serving flags whose absence would change what the server promises (plaintext
# where TLS was asked for): the server refuses to start instead of ignoring them.
REFUSED_TF_FLAGS = {
    "ssl_config_file": "TLS is not implemented yet; terminate TLS in front of Servoir "
    "(an ingress, a load balancer or a sidecar)",
}


def refused(args: list[str]) -> str | None:
    """Why the server must not start with these unknown arguments, or None."""
    for arg in args:
        name = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("--") and name in REFUSED_TF_FLAGS:
            return f"--{name}: {REFUSED_TF_FLAGS[name]}"
    return None


def describe_unknown(arg: str) -> str:
    """The line printed for an argument the parser did not take."""
    name = arg.lstrip("-").split("=", 1)[0]
    reason = UNSUPPORTED_TF_FLAGS.get(name) if arg.startswith("--") else None
    if reason is None:
        return f"unknown argument: {arg}"
    return f"unsupported TensorFlow Serving flag, ignored: {arg} ({reason})"


@dataclass(frozen=True, slots=True)
class ParsedFlags:
    values: argparse.Namespace
    unknown: list[str]


def parse_flags(argv: list[str]) -> ParsedFlags:
    values, unknown = build_parser().parse_known_args(argv)
    return ParsedFlags(values, unknown)
