"""Platform name -> runtime loader, imported lazily so a server without a framework still starts.

A runtime module exposes `make_loader(model_name, version, path, context) -> Loader`; its heavy
imports (onnxruntime, tensorflow, torch) happen inside the loader, never at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from servoir.core.servable import Loader
from servoir.errors import Code, ServingError


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Settings every runtime may read; runtime-specific ones live in `extra`."""

    # One thread per session by default: requests run in parallel on the inference executor
    # (one thread per core), so cores are used across requests, and a small model's run
    # never pays for waking a pool thread (~100 us, docs/benchmarks.md). 0: one per core.
    onnx_intra_op_threads: int = 1
    onnx_inter_op_threads: int = 1
    # A model whose runs take less than this runs on the event loop: a thread hop costs
    # more than the run itself for small models (see docs/benchmarks.md).
    inline_run_max_seconds: float = 0.0005
    torch_intra_op_threads: int = 0  # 0: one per core (torch's setting is process-wide)
    # Python models run code from the model repository; operators can refuse them.
    disable_python_models: bool = False
    # TensorFlow SavedModels: --saved_model_tags, and the session's thread pools from
    # --tensorflow_*_parallelism (0: TensorFlow picks, one thread per core).
    saved_model_tags: tuple[str, ...] = ("serve",)
    tensorflow_intra_op_threads: int = 0
    tensorflow_inter_op_threads: int = 0
    # A serialized tensorflow.ConfigProto (--tensorflow_session_config_file, or a
    # --platform_config_file's session_config); its thread counts of 0 take the two above.
    tensorflow_session_config: bytes = b""
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    executor: Executor  # where blocking inference runs
    options: RuntimeOptions = RuntimeOptions()


LoaderFactory = Callable[[str, int, Path, RuntimeContext], Loader]


@dataclass(frozen=True, slots=True)
class Runtime:
    platform: str
    module: str  # "package.module" exposing make_loader
    marker_files: tuple[str, ...]  # any of these in a version directory selects the runtime
    extra: str = ""  # the pip extra that installs its framework


RUNTIMES: tuple[Runtime, ...] = (
    # First: a model.py serves its directory, whatever other model files it loads itself.
    Runtime("python", "servoir.runtimes.python_model", ("model.py",)),
    Runtime("onnx", "servoir.runtimes.onnx", ("model.onnx",)),
    Runtime("pytorch", "servoir.runtimes.torch", ("model.pt", "model.pt2"), extra="torch"),
    Runtime(
        "tensorflow",
        "servoir.runtimes.tensorflow",
        ("saved_model.pb", "saved_model.pbtxt"),
        extra="tensorflow",
    ),
)


def detect_platform(path: Path) -> str:
    for runtime in RUNTIMES:
        if any((path / marker).is_file() for marker in runtime.marker_files):
            return runtime.platform
    expected = ", ".join(m for r in RUNTIMES for m in r.marker_files)
    raise ServingError(
        Code.NOT_FOUND, f"No model file found in version directory {path.name}: expected {expected}"
    )


def loader_factory(platform: str) -> LoaderFactory:
    for runtime in RUNTIMES:
        if runtime.platform == platform:
            module = importlib.import_module(runtime.module)
            return cast(LoaderFactory, module.make_loader)
    known = ", ".join(r.platform for r in RUNTIMES)
    raise ServingError(
        Code.INVALID_ARGUMENT, f"Unsupported model_platform: {platform!r} (supported: {known})"
    )
