"""Python models: `<version>/model.py` defines `class Model`, and Servoir serves it.

SECURITY: serving a Python model runs code from the model repository with the server's
rights. Whoever can write a version directory can run code on the server. Operators who
serve only framework models turn this off with --disable_python_models.

The contract (docs/runtimes.md has the full text), in the spirit of TorchServe handlers:

    class Model:
        signature = {...}       # the signature.json structure; or a signature.json file
        batched = True          # optional: inputs' first dim is the batch (for batching)
        thread_safe = True      # optional: False runs one call at a time

        def load(self, path: pathlib.Path) -> None: ...   # optional; path: the version dir
        def preprocess(self, inputs): ...                 # optional
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
        def postprocess(self, outputs): ...               # optional
        def close(self) -> None: ...                      # optional; on unload

A call is `postprocess(predict(preprocess(inputs)))`, run on the inference executor (user
code may block). A ValueError raised by the model is the client's fault (400 with its
message); any other exception is answered INTERNAL and logged with its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from servoir.core.servable import Servable
from servoir.errors import Code, ServingError
from servoir.runtimes.blocking import BlockingRunner
from servoir.runtimes.loading import VersionLoader
from servoir.runtimes.python_import import (
    MODEL_FILE,
    ModelImportError,
    describe,
    forget_modules,
    import_model_file,
    module_name,
)
from servoir.runtimes.registry import RuntimeContext
from servoir.runtimes.signature_file import (
    SIGNATURE_FILE,
    SignatureFileError,
    declared_output,
    parse_signature,
    read_signature_file,
)
from servoir.types import DEFAULT_SIGNATURE, Array, Signature

log = logging.getLogger("servoir.runtimes.python")

CLASS_NAME = "Model"


class PythonServable:
    platform = "python"
    checks_shapes = True

    def __init__(
        self,
        model: Any,
        signature: Signature,
        module: str,
        path: Path,
        context: RuntimeContext,
    ) -> None:
        self._model = model
        self._signature = signature
        self._signatures = {DEFAULT_SIGNATURE: signature}
        self._module = module
        self._path = path
        # The model's own word that it takes a batch along dim 0: servoir.batching may then
        # concatenate requests (it reads `batchable`; users write `batched`).
        self.batchable = bool(getattr(model, "batched", False))
        self._lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if getattr(model, "thread_safe", True) else threading.Lock()
        )
        self._steps: list[Callable[[Any], Any]] = [
            step
            for step in (
                getattr(model, "preprocess", None),
                model.predict,
                getattr(model, "postprocess", None),
            )
            if step is not None
        ]
        # User code may block on anything: it never runs on the event loop.
        self._runner = BlockingRunner(context, allow_inline=False)

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        # Binary and gRPC tensors arrive as read-only views of the request: user code may
        # write to its inputs (`x *= 2`) whatever the transport, so those are copied.
        data = {k: v if v.flags.writeable else v.copy() for k, v in inputs.items()}
        aliases = list(output_aliases)
        return await self._runner.run(lambda: self._call(data, aliases), deadline)

    def _call(self, data: Any, aliases: list[str]) -> dict[str, Array]:
        with self._lock:
            try:
                for step in self._steps:
                    data = step(data)
            except ServingError:
                raise
            except ValueError as e:
                raise ServingError(Code.INVALID_ARGUMENT, describe(e, self._path)) from None
            except BaseException as e:  # SystemExit, KeyboardInterrupt too: never the server's
                log.error("model %s raised during a request", self._module, exc_info=e)
                raise ServingError(
                    Code.INTERNAL, f"{MODEL_FILE} raised {type(e).__name__} (see the server log)"
                ) from None
        if not isinstance(data, Mapping):
            raise ServingError(
                Code.INTERNAL,
                f"{MODEL_FILE} returned a {type(data).__name__}, not a dict of outputs",
            )
        outputs: dict[str, Array] = {}
        for alias in aliases:
            if alias not in data:
                raise ServingError(Code.INTERNAL, f"{MODEL_FILE} returned no output {alias!r}")
            try:
                outputs[alias] = declared_output(alias, data[alias], self._signature.outputs[alias])
            except (TypeError, ValueError) as e:
                raise ServingError(Code.INTERNAL, f"{MODEL_FILE}: {e}") from None
        return outputs

    def close(self) -> None:
        model, self._model = self._model, None
        try:
            closer = getattr(model, "close", None)
            if closer is not None:
                closer()
        except Exception:
            log.exception("model %s raised in close()", self._module)
        finally:
            forget_modules(self._module)


class PythonLoader(VersionLoader):
    def load(self) -> Servable:
        if self._context.options.disable_python_models:
            raise self._error(
                "Python models are disabled on this server (--disable_python_models)",
                Code.FAILED_PRECONDITION,
            )
        name = module_name(self._name, self._version)
        try:
            module = import_model_file(self._path, name)
        except ModelImportError as e:
            if e.__cause__ is not None:
                log.warning("model %s: %s", self._name, e, exc_info=e.__cause__)
            raise self._error(str(e)) from None
        try:
            model = self._instantiate(module)
        except BaseException:
            forget_modules(name)
            raise
        try:
            signature = self._signature(model)
        except ServingError:
            # Loaded but unusable: release what load() took, as an unload would.
            PythonServable(model, Signature({}, {}), name, self._path, self._context).close()
            raise
        return PythonServable(model, signature, name, self._path, self._context)

    def _instantiate(self, module: Any) -> Any:
        cls = getattr(module, CLASS_NAME, None)
        if not isinstance(cls, type):
            raise self._error(f"{MODEL_FILE} defines no class {CLASS_NAME}")
        if not callable(getattr(cls, "predict", None)):
            raise self._error(f"{CLASS_NAME} has no predict method")
        step = f"{CLASS_NAME}()"
        try:
            model = cls()
            if callable(getattr(model, "load", None)):
                step = f"{CLASS_NAME}.load"
                model.load(self._path)
        except BaseException as e:  # SystemExit from a model must not end the server
            log.warning("model %s: %s raised", self._name, step, exc_info=e)
            raise self._error(f"{step} raised {describe(e, self._path)}") from None
        return model

    def _signature(self, model: Any) -> Signature:
        declared = getattr(model, "signature", None)
        has_file = (self._path / SIGNATURE_FILE).is_file()
        try:
            if declared is not None and has_file:
                raise SignatureFileError(
                    f"both {CLASS_NAME}.signature and {SIGNATURE_FILE} declare the signature; "
                    "keep one"
                )
            if isinstance(declared, Signature):
                return declared
            if declared is not None:
                return parse_signature(declared, f"{CLASS_NAME}.signature")
            if has_file:
                return read_signature_file(self._path / SIGNATURE_FILE)
        except SignatureFileError as e:
            raise self._error(str(e)) from None
        raise self._error(
            f"no signature: set {CLASS_NAME}.signature or write {SIGNATURE_FILE} beside "
            f"{MODEL_FILE}"
        )


def make_loader(name: str, version: int, path: Path, context: RuntimeContext) -> PythonLoader:
    return PythonLoader(name, version, path, context)
