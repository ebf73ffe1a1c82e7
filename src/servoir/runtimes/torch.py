"""The PyTorch runtime: TorchScript (`<version>/model.pt`) and torch.export programs
(`<version>/model.pt2`), with the signature declared in `<version>/signature.json`.

Neither format names its inputs and outputs, so signature.json does (see signature_file):
inputs are passed to the model positionally in the order declared; a tensor result is the
one declared output, a tuple or list maps to the outputs in order, a dict by name.

Loading runs no Python from the model directory: torch.jit.load compiles TorchScript and
unpickles with TorchScript's restricted unpickler, and a .pt2 archive is checked first
(torch_archive) so that torch.export.load only reads JSON and raw tensor bytes. Runs happen
under torch.inference_mode(), off the event loop unless measured fast (blocking.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servoir.core.servable import Servable
from servoir.errors import Code, ServingError
from servoir.runtimes.blocking import BlockingRunner
from servoir.runtimes.loading import VersionLoader
from servoir.runtimes.registry import RuntimeContext
from servoir.runtimes.signature_file import (
    SIGNATURE_FILE,
    SignatureFileError,
    declared_output,
    read_signature_file,
)
from servoir.runtimes.torch_archive import UnsafeArchive, check_pt2
from servoir.types import DEFAULT_SIGNATURE, Array, DataType, Signature

TORCHSCRIPT_FILE = "model.pt"
EXPORT_FILE = "model.pt2"


def intra_op_threads(configured: int) -> int:
    """torch's intra-op threads: the flag, else one per core (see docs/runtimes.md)."""
    return configured if configured > 0 else (os.cpu_count() or 1)


class TorchServable:
    platform = "pytorch"
    checks_shapes = True

    def __init__(
        self, module: Any, signature: Signature, context: RuntimeContext, threads: int
    ) -> None:
        self._module = module
        self._threads = threads
        self._signature = signature
        self._signatures = {DEFAULT_SIGNATURE: signature}
        self._runner = BlockingRunner(context)
        # As for ONNX: requests may be concatenated along dim 0 (servoir.batching reads this)
        # only when every declared input and output has a variable dim 0.
        self.batchable = all(
            spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] == -1
            for spec in (*signature.inputs.values(), *signature.outputs.values())
        )

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    @property
    def runs_on_loop(self) -> bool:
        """Runs execute on the event loop now, one at a time (servoir.batching reads it)."""
        return self._runner.inline

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        # Declaration order is argument order; the service has checked every input is here.
        arrays = [inputs[alias] for alias in self._signature.inputs]
        aliases = list(output_aliases)
        return await self._runner.run(lambda: self._call(arrays, aliases), deadline)

    def _call(self, arrays: list[Array], aliases: list[str]) -> dict[str, Array]:
        import torch

        module = self._module
        if module is None:
            raise ServingError(Code.UNAVAILABLE, "the model is being unloaded")
        # torch keeps the intra-op thread count per OS thread, taken from the process-wide
        # value when a thread first uses torch: a thread that ran torch before the setting
        # changed keeps the old count until told.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        tensors = [torch.from_numpy(_torch_ready(a)) for a in arrays]
        try:
            with torch.inference_mode():
                result = module(*tensors)
        except Exception as e:
            raise _run_error(e) from None
        return self._outputs(result, aliases)

    def _outputs(self, result: Any, aliases: list[str]) -> dict[str, Array]:
        declared = list(self._signature.outputs)
        if isinstance(result, Mapping):
            missing = [a for a in aliases if a not in result]
            if missing:
                raise _mapping_error(f"the model's dict has no {', '.join(missing)}")
            by_name = dict(result)
        elif isinstance(result, tuple | list):
            if len(result) != len(declared):
                raise _mapping_error(
                    f"the model returned {len(result)} values for {len(declared)} declared outputs"
                )
            by_name = dict(zip(declared, result, strict=True))
        elif len(declared) == 1:
            by_name = {declared[0]: result}
        else:
            raise _mapping_error(
                f"the model returned one value for {len(declared)} declared outputs"
            )
        outputs: dict[str, Array] = {}
        for alias in aliases:
            value = by_name[alias]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            try:
                outputs[alias] = declared_output(alias, value, self._signature.outputs[alias])
            except (TypeError, ValueError) as e:
                raise _mapping_error(str(e)) from None
        return outputs

    def close(self) -> None:
        self._module = None


def _torch_ready(array: Array) -> Array:
    """torch.from_numpy shares memory: a read-only or oddly strided array is copied first."""
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, order="C")


def _mapping_error(reason: str) -> ServingError:
    return ServingError(Code.INTERNAL, f"model outputs do not match {SIGNATURE_FILE}: {reason}")


def _run_error(e: Exception) -> ServingError:
    """torch's own words, without TorchScript's interpreter traceback."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # TorchScript puts the interpreter's traceback first and the error itself last.
    reason = lines[-1] if len(lines) > 1 and "Traceback of TorchScript" in str(e) else ""
    reason = reason or (lines[0] if lines else type(e).__name__)
    # A `raise` in TorchScript code arrives as torch.jit.Error, "builtins.<Type>: ...".
    reason = reason.removeprefix("builtins.")
    for prefix in ("RuntimeError: ", "ValueError: ", "IndexError: ", "TypeError: "):
        reason = reason.removeprefix(prefix)
    raised = (RuntimeError, ValueError, IndexError, TypeError, AssertionError, _jit_error())
    if isinstance(e, raised):
        return ServingError(Code.INVALID_ARGUMENT, f"model execution failed: {reason}")
    return ServingError(Code.INTERNAL, f"model execution failed: {reason}")


# torch.export.load keeps the archive being read in a process-wide global of torch's
# (_CURRENT_DESERIALIZER): two loads at once in one process fail ("... is already set").
# The lock is process-wide for the same reason.
_EXPORT_LOAD = threading.Lock()


def _jit_error() -> type[Exception]:
    import torch

    error: type[Exception] = torch.jit.Error
    return error


class TorchLoader(VersionLoader):
    def load(self) -> Servable:
        torch = self._framework("torch", "PyTorch", "torch")
        try:
            signature = read_signature_file(self._path / SIGNATURE_FILE)
        except SignatureFileError as e:
            raise self._error(str(e)) from None
        strings = [n for n, s in signature.inputs.items() if s.dtype is DataType.DT_STRING]
        if strings:
            raise self._error(f"{SIGNATURE_FILE}: torch has no string tensors ({strings[0]})")
        threads = intra_op_threads(self._context.options.torch_intra_op_threads)
        # Process-wide in torch; every torch model is loaded with the same setting.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        module = self._load_module(torch)
        self._check_arity(module, len(signature.inputs))
        return TorchServable(module, signature, self._context, threads)

    def _load_module(self, torch: Any) -> Any:
        pt2 = self._path / EXPORT_FILE
        try:
            if pt2.is_file():
                check_pt2(pt2)
                with _EXPORT_LOAD:
                    return torch.export.load(str(pt2)).module()
            module = torch.jit.load(str(self._path / TORCHSCRIPT_FILE), map_location="cpu")
            module.eval()
            return module
        except UnsafeArchive as e:
            raise self._error(str(e)) from None
        except Exception as e:
            file = EXPORT_FILE if pt2.is_file() else TORCHSCRIPT_FILE
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise self._error(f"{file} cannot be loaded: {self._redact(first)}") from None

    def _check_arity(self, module: Any, declared: int) -> None:
        """A signature.json with the wrong number of inputs fails at load, not per request."""
        schema = getattr(getattr(module, "forward", None), "schema", None)
        if schema is None:  # a torch.export program: its graph's user inputs
            graph = getattr(module, "graph", None)
            placeholders = [n for n in graph.nodes if n.op == "placeholder"] if graph else []
            low = high = len(placeholders)
        else:
            args = list(schema.arguments)[1:]  # the first is the module, named self or not
            high = len(args)
            low = sum(1 for a in args if not a.has_default_value())
        if not low <= declared <= high:
            takes = str(low) if low == high else f"{low} to {high}"
            raise self._error(
                f"{SIGNATURE_FILE} declares {declared} input(s) but the model takes {takes}"
            )


def make_loader(name: str, version: int, path: Path, context: RuntimeContext) -> TorchLoader:
    return TorchLoader(name, version, path, context)
