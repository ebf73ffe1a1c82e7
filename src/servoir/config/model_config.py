"""TensorFlow Serving's `--model_config_file` (a text ModelServerConfig) and its validation.

Parsing and validation are pure: text or a message in, `ModelConfig` entries (or a
ServingError with the contract's text) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from servoir.errors import Code, ServingError
from servoir.protos import POOL
from servoir.protos.tensorflow_serving.config import model_server_config_pb2
from servoir.sources.versions import All, Latest, Specific, VersionPolicy

# model_platform values TF Serving configs use -> Servoir runtime names.
PLATFORM_ALIASES = {
    "tensorflow": "tensorflow",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxruntime_onnx": "onnx",
    "pytorch": "pytorch",
    "torch": "pytorch",
    "python": "python",
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    base_path: Path
    platform: str = ""  # "" means detect from each version directory's files
    policy: VersionPolicy = field(default_factory=Latest)
    labels: Mapping[str, int] = field(default_factory=dict)
    logging: Any = None  # tensorflow.serving.LoggingConfig, when set


def parse_text(text: str, origin: str) -> Any:
    """A text-format ModelServerConfig message; bad text names the line and column."""
    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message, descriptor_pool=POOL)
    except text_format.ParseError as e:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Invalid protobuf file: '{origin}': line {e.GetLine()}, column {e.GetColumn()}: "
            f"{_reason(e)}",
        ) from None
    return message


def _reason(e: text_format.ParseError) -> str:
    text = str(e)
    # ParseError text starts with "line:column : "; we have said where already.
    head, sep, rest = text.partition(" : ")
    return rest if sep and ":" in head else text


def read_file(path: Path) -> list[ModelConfig]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"cannot read model config file {path}: {e.strerror}"
        ) from None
    return file_configs(parse_text(text, str(path)), replacing=False) or []


EMPTY_AFTER_LIST = (
    "Cannot transition to requested config. It is only legal to transition from one "
    "ModelConfigList to another."
)


def file_configs(message: Any, replacing: bool) -> list[ModelConfig] | None:
    """A --model_config_file's models, or None for a file with no config at all: TF Serving
    takes no action for it, and a later file may still set models. It cannot replace a
    running model list (`replacing`): FAILED_PRECONDITION, as TF's ReloadConfig."""
    if message.WhichOneof("config") is None:
        if replacing:
            raise ServingError(Code.FAILED_PRECONDITION, EMPTY_AFTER_LIST)
        return None
    return from_message(message)


def _policy(config: Any) -> VersionPolicy:
    if not config.HasField("model_version_policy"):
        return Latest()
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return All()
    if choice == "specific":
        return Specific(tuple(policy.specific.versions))
    if choice == "latest":
        return Latest(policy.latest.num_versions)
    return Latest()


def _platform(config: Any) -> str:
    name = config.model_platform.strip().lower()
    if not name:
        return ""
    if name not in PLATFORM_ALIASES:
        known = ", ".join(sorted(set(PLATFORM_ALIASES.values())))
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Model {config.name} has unknown model_platform {config.model_platform!r} "
            f"(known: {known})",
        )
    return PLATFORM_ALIASES[name]


def from_message(message: Any) -> list[ModelConfig]:
    """Validated entries of a ModelServerConfig (contract 2.3 HandleReloadConfigRequest)."""
    if message.WhichOneof("config") != "model_config_list":
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        )
    seen: set[str] = set()
    entries: list[ModelConfig] = []
    for config in message.model_config_list.config:
        if config.name in seen:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Illegal to list model {config.name} multiple times in config list",
            )
        seen.add(config.name)
        if not config.name:
            raise ServingError(Code.INVALID_ARGUMENT, "Every model in the config needs a name")
        if not Path(config.base_path).is_absolute():
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected model {config.name} to have an absolute path or URI; "
                f"got base_path()={config.base_path}",
            )
        entries.append(
            ModelConfig(
                name=config.name,
                base_path=Path(config.base_path),
                platform=_platform(config),
                policy=_policy(config),
                labels=dict(config.version_labels),
                logging=config.logging_config if config.HasField("logging_config") else None,
            )
        )
    return entries


def check_platform_changes(old: Sequence[ModelConfig], new: Sequence[ModelConfig]) -> None:
    """TF Serving refuses a reload that changes a model's platform. An empty platform means
    "detected from the files" (--model_base_path gives one), so naming the platform, or
    leaving it out again, is not a change: a platform the files contradict fails that
    model's load with an error naming both."""
    before = {c.name: c.platform for c in old}
    for config in new:
        was = before.get(config.name, "")
        if was and config.platform and was != config.platform:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Illegal to change a model's platform. For model {config.name} platform was "
                f"{was} and new platform requested is {config.platform}",
            )
