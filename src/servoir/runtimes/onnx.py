"""The ONNX runtime: `<version>/model.onnx` served through onnxruntime.

The graph's inputs and outputs become the `serving_default` signature (alias = tensor name).
Sessions never spin-wait (spinning burns the cores the event loop needs on an idle server).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servoir.core.servable import Servable
from servoir.errors import Code, ServingError, invalid_argument
from servoir.runtimes.blocking import BlockingRunner
from servoir.runtimes.loading import VersionLoader
from servoir.runtimes.registry import RuntimeContext
from servoir.types import DEFAULT_SIGNATURE, Array, DataType, Signature, TensorSpec

MODEL_FILE = "model.onnx"

_ONNX_TYPES: dict[str, DataType] = {
    "tensor(float)": DataType.DT_FLOAT,
    "tensor(double)": DataType.DT_DOUBLE,
    "tensor(float16)": DataType.DT_HALF,
    "tensor(bfloat16)": DataType.DT_BFLOAT16,
    "tensor(int8)": DataType.DT_INT8,
    "tensor(int16)": DataType.DT_INT16,
    "tensor(int32)": DataType.DT_INT32,
    "tensor(int64)": DataType.DT_INT64,
    "tensor(uint8)": DataType.DT_UINT8,
    "tensor(uint16)": DataType.DT_UINT16,
    "tensor(uint32)": DataType.DT_UINT32,
    "tensor(uint64)": DataType.DT_UINT64,
    "tensor(bool)": DataType.DT_BOOL,
    "tensor(string)": DataType.DT_STRING,
}


def _spec(arg: Any) -> TensorSpec:
    dtype = _ONNX_TYPES.get(arg.type)
    if dtype is None:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"tensor {arg.name!r} has unsupported ONNX type {arg.type}"
        )
    shape = None if arg.shape is None else tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape)


def _to_ort(array: Array, spec: TensorSpec) -> Array:
    if spec.dtype is DataType.DT_STRING:
        # onnxruntime wants str elements; our string tensors carry bytes. It cannot carry
        # bytes that are not UTF-8 (it would write str(b"...")): refuse them, never alter.
        try:
            decoded: Array = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array)
        except UnicodeDecodeError:
            raise invalid_argument(
                f"input '{spec.name}' holds bytes that are not UTF-8; this model's string "
                "inputs (ONNX Runtime) take UTF-8 text only"
            ) from None
        return decoded
    return array


def _from_ort(value: Any, spec: TensorSpec) -> Array:
    array = np.asarray(value)
    if spec.dtype is DataType.DT_STRING:
        encoded: Array = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
        return encoded
    return array


class OnnxServable:
    platform = "onnx"
    checks_shapes = True

    def __init__(self, session: Any, context: RuntimeContext) -> None:
        self._session = session
        self._context = context
        inputs = {a.name: _spec(a) for a in session.get_inputs()}
        outputs = {a.name: _spec(a) for a in session.get_outputs()}
        self._signature = Signature(inputs, outputs)
        self._signatures = {DEFAULT_SIGNATURE: self._signature}
        self._runner = BlockingRunner(context)
        # Dynamic batching may concatenate requests along dim 0 only when every input and
        # output has a variable dim 0 (servoir.batching reads this attribute).
        self.batchable = all(
            spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] == -1
            for spec in (*inputs.values(), *outputs.values())
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
        import onnxruntime as ort

        feeds = {k: _to_ort(v, self._signature.inputs[k]) for k, v in inputs.items()}
        names = list(output_aliases)
        options = ort.RunOptions()
        try:
            values = await self._runner.run(lambda: self._run(names, feeds, options), deadline)
        except ServingError as e:
            if e.code is Code.DEADLINE_EXCEEDED:
                options.terminate = True  # stop the abandoned run early
            raise
        return {
            n: _from_ort(v, self._signature.outputs[n]) for n, v in zip(names, values, strict=True)
        }

    def _run(self, names: list[str], feeds: dict[str, Array], options: Any) -> list[Any]:
        try:
            values: list[Any] = self._session.run(names, feeds, options)
        except Exception as e:
            raise _run_error(e) from None
        return values

    def close(self) -> None:
        self._session = None


def _run_error(e: Exception) -> ServingError:
    text = str(e)
    if "terminate" in text.lower():
        return ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded")
    reason = ort_reason(text)
    if "INVALID_ARGUMENT" in text or "Got invalid dimensions" in text:
        return ServingError(Code.INVALID_ARGUMENT, reason)
    if "while running" in text:
        # A node failed on these inputs: they passed the signature's checks, but the graph
        # needs more of them (inputs whose dims must agree, a reshape's element count).
        return ServingError(Code.INVALID_ARGUMENT, f"model execution failed: {reason}")
    return ServingError(Code.INTERNAL, f"model execution failed: {reason}")


_SOURCE_LOCATION = re.compile(r"\S*[\\/]\S+\.(?:h|hpp|cc|cpp|c):\d+\s*")
_CPP_SIGNATURE = re.compile(r"^(?:[\w:<>,&*~ ]+?\s)?[\w:~]+::[\w~]+\([^)]*\)(?:\s*const)?\s*")


def ort_reason(text: str) -> str:
    """onnxruntime's message without its prefix, source paths and C++ signatures:
    `[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Mul node.
    Name:'' Status Message: /onnxruntime_src/...h:563 void onnxruntime::...(...) axis == 1
    was false. Attempting to broadcast ...` becomes `Mul node: Attempting to broadcast ...`."""
    # onnxruntime prefixes "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "; keep the reason.
    reason = text.rsplit(" : ", 1)[-1] if text.startswith("[ONNXRuntimeError]") else text
    node = re.search(r"while running (\S+) node", reason)
    if node is not None and "Status Message:" in reason:
        detail = reason.split("Status Message:", 1)[1].strip()
        detail = _CPP_SIGNATURE.sub("", _SOURCE_LOCATION.sub("", detail)).strip()
        if " was false. " in detail:  # an internal check's condition, then its explanation
            detail = detail.split(" was false. ", 1)[1]
        reason = f"{node.group(1)} node: {detail}"
    return _SOURCE_LOCATION.sub("", reason).strip()


class OnnxLoader(VersionLoader):
    def load(self) -> Servable:
        ort = self._framework("onnxruntime", "ONNX")  # a core dependency: no extra
        model_file = self._path / MODEL_FILE
        if not model_file.is_file():
            raise self._error(f"{MODEL_FILE} not found in the version directory")
        options = ort.SessionOptions()
        opts = self._context.options
        options.intra_op_num_threads = opts.onnx_intra_op_threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = opts.onnx_inter_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise self._error(self._redact(str(e))) from None
        return OnnxServable(session, self._context)


def make_loader(name: str, version: int, path: Path, context: RuntimeContext) -> OnnxLoader:
    return OnnxLoader(name, version, path, context)
