"""Batching settings: TensorFlow Serving's BatchingParameters (text files), validated with
its messages and defaults, plus the few Servoir extensions that are not in TF's proto.

Parsing and validation are pure: text in, `BatchingOptions` (or a ServingError carrying the
contract's text) out. Reading files happens in `read_parameters` only.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servoir.errors import Code, ServingError
from servoir.protos.tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

# `<version>/batching_params.pbtxt`, read with --enable_per_model_batching_parameters.
PER_MODEL_FILE = "batching_params.pbtxt"
DEFAULT_THREAD_POOL = "model_server_batch_threads"


@dataclass(frozen=True, slots=True)
class BatchingOptions:
    """One queue's settings. Defaults are TF's SharedBatchScheduler defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 0  # 0: one per core (TF's default)
    thread_pool_name: str = DEFAULT_THREAD_POOL
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size

    @property
    def batch_limit(self) -> int:
        """Most rows one executed batch holds. With splitting, max_batch_size only bounds a
        request (TF's input_batch_size_limit) and batches hold max_execution_batch_size."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size > 0:
            return self.max_execution_batch_size
        return self.max_batch_size

    @property
    def timeout_s(self) -> float:
        return self.batch_timeout_micros / 1e6

    @property
    def threads(self) -> int:
        return self.num_batch_threads or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Server-wide batching: what --enable_batching and its companion flags set."""

    options: BatchingOptions = field(default_factory=BatchingOptions)
    # --enable_per_model_batching_parameters: a version directory's batching_params.pbtxt
    # replaces `options` for that model; models without the file are not batched (as in TF).
    per_model: bool = False
    # Servoir: when a batch thread is idle and no batch is full or past its timeout, run the
    # oldest waiting batch now instead of idling until the timeout (a lone client pays
    # nothing). False keeps TF's exact timing.
    dispatch_when_idle: bool = True
    # Servoir: group requests of similar length (dim 1) into the same batches. None: off;
    # () : powers of two; otherwise the upper bounds of the buckets, increasing.
    length_buckets: tuple[int, ...] | None = None
    # Servoir (--batching_length_buckets=nearest): no fixed buckets; each batch is the
    # oldest waiting request and the waiting requests nearest to it in length.
    nearest_length: bool = False
    # --platform_config_file: runtimes whose entry decides their batching (None: that
    # runtime is not batched). The flags' settings above apply to the other runtimes, and
    # only when --enable_batching is on (`flags_enabled`).
    platforms: Mapping[str, BatchingOptions | None] = field(default_factory=dict)
    flags_enabled: bool = True
    # Platforms whose entry sets enable_per_model_batching_params: their versions batch by
    # their own batching_params.pbtxt, as `per_model` does for the flags.
    per_model_platforms: frozenset[str] = frozenset()

    def batches(self, platform: str) -> bool:
        """Whether models of this runtime may batch (per-model files aside)."""
        if platform in self.platforms:
            return self.platforms[platform] is not None
        return self.flags_enabled

    @property
    def threads(self) -> int:
        """One scheduler serves every runtime: enough threads for the largest setting."""
        used = [o for o in self.platforms.values() if o is not None]
        if self.flags_enabled:
            used.append(self.options)
        return max((o.threads for o in used), default=self.options.threads)


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def validate(options: BatchingOptions) -> BatchingOptions:
    """TF's load-time checks (bundle_factory_util, SharedBatchScheduler::AddQueue)."""
    positive = (
        ("max_batch_size", options.max_batch_size),
        ("max_enqueued_batches", options.max_enqueued_batches),
    )
    for name, value in positive:
        if value <= 0:
            raise _invalid(f"{name} must be positive; was {value}")
    if options.batch_timeout_micros < 0:
        raise _invalid(
            f"batch_timeout_micros must be non-negative; was {options.batch_timeout_micros}"
        )
    if options.num_batch_threads < 0:
        raise _invalid(f"num_batch_threads must be positive; was {options.num_batch_threads}")
    if options.max_execution_batch_size < 0:
        raise _invalid(
            f"max_execution_batch_size must be positive; was {options.max_execution_batch_size}"
        )
    sizes = options.allowed_batch_sizes
    if sizes:
        if any(s <= 0 for s in sizes) or any(b <= a for a, b in itertools.pairwise(sizes)):
            raise _invalid("allowed_batch_sizes entries must be monotonically increasing")
        if sizes[-1] != options.max_batch_size:
            raise _invalid(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {options.max_batch_size}"
            )
    return options


def from_message(message: Any) -> BatchingOptions:
    """A tensorflow.serving.BatchingParameters message; unset wrappers keep TF's defaults."""
    defaults = BatchingOptions()

    def wrapped(name: str, default: Any) -> Any:
        return getattr(message, name).value if message.HasField(name) else default

    # Servoir reads 0 as "one per core"; in a file, TF refuses it.
    if message.HasField("num_batch_threads") and message.num_batch_threads.value <= 0:
        raise _invalid(f"num_batch_threads must be positive; was {message.num_batch_threads.value}")

    return validate(
        BatchingOptions(
            max_batch_size=wrapped("max_batch_size", defaults.max_batch_size),
            batch_timeout_micros=wrapped("batch_timeout_micros", defaults.batch_timeout_micros),
            max_enqueued_batches=wrapped("max_enqueued_batches", defaults.max_enqueued_batches),
            num_batch_threads=wrapped("num_batch_threads", defaults.num_batch_threads),
            thread_pool_name=wrapped("thread_pool_name", defaults.thread_pool_name),
            allowed_batch_sizes=tuple(message.allowed_batch_sizes),
            pad_variable_length_inputs=message.pad_variable_length_inputs,
            enable_large_batch_splitting=wrapped("enable_large_batch_splitting", False),
            max_execution_batch_size=wrapped("max_execution_batch_size", 0),
        )
    )


def parse_parameters(text: str, origin: str) -> BatchingOptions:
    """Text-format BatchingParameters -> validated options; bad text names line and column."""
    message = session_bundle_config_pb2.BatchingParameters()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise _invalid(f"Invalid protobuf file: '{origin}': {e}") from None
    return from_message(message)


def read_parameters(path: Path, shown_as: str | None = None) -> BatchingOptions:
    """Read and parse a BatchingParameters file; `shown_as` replaces the path in messages
    that may reach a client (a per-model file's error ends up in the model's status)."""
    origin = shown_as or str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise _invalid(f"cannot read batching parameters file {origin}: {e.strerror}") from None
    return parse_parameters(text, origin)


NEAREST = "nearest"


def parse_length_buckets(text: str) -> tuple[int, ...] | None:
    """--batching_length_buckets: "" (off), "auto" (powers of two) or "16,32,64,128"
    ("nearest" is not a set of buckets: see BatchingConfig.nearest_length)."""
    text = text.strip()
    if not text or text == NEAREST:
        return None
    if text == "auto":
        return ()
    try:
        bounds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise _invalid(
            "--batching_length_buckets must be empty, auto, nearest or increasing integers: "
            f"{text!r}"
        ) from None
    if not bounds or bounds[0] <= 0 or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise _invalid(f"--batching_length_buckets must be increasing positive integers: {text!r}")
    return bounds


def config_from_flags(
    enable_batching: bool,
    parameters_file: str,
    per_model: bool = False,
    dispatch_when_idle: bool = True,
    length_buckets: str = "",
) -> BatchingConfig | None:
    """The batching flags -> a BatchingConfig, or None when batching is off. Raises
    INVALID_ARGUMENT with TF Serving's text for a file given without --enable_batching."""
    if not enable_batching:
        if parameters_file:
            raise _invalid(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true."
            )
        return None
    options = read_parameters(Path(parameters_file)) if parameters_file else BatchingOptions()
    return BatchingConfig(
        options=options,
        per_model=per_model,
        dispatch_when_idle=dispatch_when_idle,
        length_buckets=parse_length_buckets(length_buckets),
        nearest_length=length_buckets.strip() == NEAREST,
    )


def with_platforms(
    config: BatchingConfig | None,
    platforms: Mapping[str, BatchingOptions | None],
    per_model_platforms: frozenset[str] = frozenset(),
    dispatch_when_idle: bool = True,
    length_buckets: str = "",
) -> BatchingConfig | None:
    """Add a --platform_config_file's batching to the flags' (None: batching is off)."""
    if not platforms:
        return config
    flags_enabled = config is not None
    if config is None:
        if all(options is None for options in platforms.values()):
            return None
        config = config_from_flags(True, "", False, dispatch_when_idle, length_buckets)
        assert config is not None
    return replace(
        config,
        platforms=dict(platforms),
        per_model_platforms=per_model_platforms,
        flags_enabled=flags_enabled,
    )
