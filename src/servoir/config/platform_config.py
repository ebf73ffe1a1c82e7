"""TensorFlow Serving's `--platform_config_file` (text PlatformConfigMap) and
`--tensorflow_session_config_file` (text ConfigProto).

A PlatformConfigMap maps a platform name to a source adapter config; TF Serving's only one is
SavedModelBundleSourceAdapterConfig, whose `legacy_config` (a SessionBundleConfig) holds what
the batching, session and warmup flags set otherwise. Servoir reads an entry for any of its
runtimes (`tensorflow`, `onnx`, `pytorch`, `python` and their aliases): the entry replaces
those flags for that runtime's models. Parsing is pure: text in, `PlatformSettings` out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message

from servoir.batching.options import BatchingOptions, from_message
from servoir.config.model_config import PLATFORM_ALIASES
from servoir.config.tensorflow_flags import DEFAULT_TAGS
from servoir.errors import Code, ServingError
from servoir.protos import POOL
from servoir.protos.tensorflow.core.protobuf import config_pb2
from servoir.protos.tensorflow_serving.config import platform_config_pb2
from servoir.protos.tensorflow_serving.servables.tensorflow import (
    saved_model_bundle_source_adapter_pb2,
)
from servoir.protos.tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (
    SessionBundleConfig,
)

log = logging.getLogger("servoir.config")

TENSORFLOW = "tensorflow"
ADAPTER = saved_model_bundle_source_adapter_pb2.SavedModelBundleSourceAdapterConfig
# SessionBundleConfig fields Servoir applies; any other one that is set is logged as ignored.
APPLIED = frozenset(
    {
        "session_config",
        "batching_parameters",
        "saved_model_tags",
        "enable_model_warmup",
        "model_warmup_options",  # num_request_iterations only: the others are logged
        "enable_per_model_batching_params",
    }
)
# Only TensorFlow SavedModels have a session and MetaGraph tags.
TENSORFLOW_ONLY = ("session_config", "saved_model_tags")


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """What one runtime's entry sets for its models."""

    batching: BatchingOptions | None = None  # None: not batched
    # enable_per_model_batching_params: each version's batching_params.pbtxt replaces
    # `batching`, and versions without one are not batched.
    per_model_batching: bool = False
    warmup: bool = False  # SessionBundleConfig.enable_model_warmup (false unless set, as in TF)
    warmup_iterations: int = 1
    # TensorFlow only: the session's ConfigProto (serialized) and the MetaGraph tags.
    session_config: bytes = b""
    saved_model_tags: tuple[str, ...] = DEFAULT_TAGS


def _invalid(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def _settings(key: str, runtime: str, config: SessionBundleConfig) -> PlatformSettings:
    if config.session_target:
        raise _invalid(
            f"platform {key}: session_target {config.session_target!r} is not supported "
            "(Servoir runs models in process)"
        )
    if runtime != TENSORFLOW:
        for name in TENSORFLOW_ONLY:
            if _is_set(config, name):
                raise _invalid(f"platform {key}: {name} applies to TensorFlow models only")
    ignored = sorted(f.name for f, _ in config.ListFields() if f.name not in APPLIED)
    ignored += sorted(
        f"model_warmup_options.{f.name}"
        for f, _ in config.model_warmup_options.ListFields()
        if f.name != "num_request_iterations"
    )
    if ignored:
        log.warning("platform %s: not applied by Servoir: %s", key, ", ".join(ignored))
    batching = None
    if config.HasField("batching_parameters"):
        try:
            batching = from_message(config.batching_parameters)
        except ServingError as e:
            raise _invalid(f"platform {key}: {e.message}") from None
    return PlatformSettings(
        batching=batching,
        per_model_batching=config.enable_per_model_batching_params,
        warmup=config.enable_model_warmup,
        warmup_iterations=_warmup_iterations(config.model_warmup_options),
        session_config=config.session_config.SerializeToString(),
        saved_model_tags=tuple(t for t in config.saved_model_tags if t) or DEFAULT_TAGS,
    )


def _warmup_iterations(options: Message) -> int:
    # As TF's saved_model_warmup_util: unset means once; a set 0 (or less) replays nothing.
    if not options.HasField("num_request_iterations"):
        return 1
    return max(int(options.num_request_iterations.value), 0)


def _is_set(message: Message, name: str) -> bool:
    if message.DESCRIPTOR.fields_by_name[name].is_repeated:
        return len(getattr(message, name)) > 0
    return bool(message.HasField(name))


def parse_platform_config(text: str, origin: str) -> dict[str, PlatformSettings]:
    """Text PlatformConfigMap -> settings by Servoir runtime name."""
    message = platform_config_pb2.PlatformConfigMap()
    try:
        # The pool resolves the Any's `[type.googleapis.com/...]` expansion.
        text_format.Parse(text, message, descriptor_pool=POOL)
    except text_format.ParseError as e:
        raise _invalid(f"Invalid protobuf file: '{origin}': {e}") from None
    try:
        return _entries(message)
    except ServingError as e:
        raise _invalid(f"Invalid platform config file '{origin}': {e.message}") from None


def _entries(message: platform_config_pb2.PlatformConfigMap) -> dict[str, PlatformSettings]:
    settings: dict[str, PlatformSettings] = {}
    for key in sorted(message.platform_configs):
        runtime = PLATFORM_ALIASES.get(key.strip().lower())
        if runtime is None:
            known = ", ".join(sorted(set(PLATFORM_ALIASES.values())))
            raise _invalid(
                f"PlatformConfigMap has an entry for unknown platform {key!r} (known: {known})"
            )
        if runtime in settings:
            raise _invalid(f"PlatformConfigMap configures platform {runtime} twice")
        any_config = message.platform_configs[key].source_adapter_config
        if not any_config.type_url:
            raise _invalid(f"platform {key}: source_adapter_config is not set")
        if not any_config.Is(ADAPTER.DESCRIPTOR):
            raise _invalid(
                f"platform {key}: source_adapter_config {any_config.TypeName()} is not supported "
                f"(Servoir reads {ADAPTER.DESCRIPTOR.full_name})"
            )
        adapter = ADAPTER()
        any_config.Unpack(adapter)
        settings[runtime] = _settings(key, runtime, adapter.legacy_config)
    return settings


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise _invalid(f"cannot read {what} file {path}: {e.strerror}") from None


def read_platform_config(path: Path) -> dict[str, PlatformSettings]:
    return parse_platform_config(_read(path, "platform config"), str(path))


def parse_session_config(text: str, origin: str) -> config_pb2.ConfigProto:
    """Text tensorflow.ConfigProto (--tensorflow_session_config_file)."""
    message = config_pb2.ConfigProto()
    try:
        text_format.Parse(text, message, descriptor_pool=POOL)
    except text_format.ParseError as e:
        raise _invalid(f"Invalid protobuf file: '{origin}': {e}") from None
    return message


def session_config(
    path: Path | None, intra: int = 0, inter: int = 0, gpu_memory_fraction: float = 0.0
) -> bytes:
    """The serialized session config the flags make: --tensorflow_session_config_file's
    (if given), with the thread and GPU memory flags that are set written over it, as TF
    Serving writes them."""
    message = config_pb2.ConfigProto()
    if path is not None:
        message = parse_session_config(_read(path, "session config"), str(path))
    if gpu_memory_fraction < 0:
        raise _invalid(
            f"--per_process_gpu_memory_fraction must not be negative; was {gpu_memory_fraction}"
        )
    if gpu_memory_fraction:
        message.gpu_options.per_process_gpu_memory_fraction = gpu_memory_fraction
    if intra:
        message.intra_op_parallelism_threads = intra
    if inter:
        message.inter_op_parallelism_threads = inter
    return bytes(message.SerializeToString())


def batching_by_platform(
    settings: Mapping[str, PlatformSettings],
) -> dict[str, BatchingOptions | None]:
    return {runtime: s.batching for runtime, s in settings.items()}


def per_model_batching(settings: Mapping[str, PlatformSettings]) -> frozenset[str]:
    return frozenset(runtime for runtime, s in settings.items() if s.per_model_batching)
