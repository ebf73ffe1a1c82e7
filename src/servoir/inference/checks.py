"""TF Serving's rules for classification and regression signatures and their outputs.

Pure functions over a Signature and the arrays a run returned, raising TF Serving's own
messages (servables/tensorflow/classifier.cc, regressor.cc): they are table-tested, and the
Classify/Regress/MultiInference flows (servoir.inference.api) call them in TF's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from servoir.errors import invalid_argument
from servoir.types import CLASSIFY_METHOD, REGRESS_METHOD, Array, DataType, Signature, TensorSpec

INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"


def classify_outputs(signature: Signature, check_method_name: bool) -> list[str]:
    """The output aliases a classify run fetches (`classes`, then `scores`, where present)."""
    if check_method_name and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No classification inputs found in SignatureDef: {debug_string(signature)}"
        )
    fetch = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if not fetch:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores". Signature was: {debug_string(signature)}'
        )
    return fetch


def regress_outputs(signature: Signature, check_method_name: bool) -> list[str]:
    """The output aliases a regress run fetches (`outputs`)."""
    if check_method_name and signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No regression inputs found in SignatureDef: {debug_string(signature)}"
        )
    if OUTPUTS not in signature.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {debug_string(signature)}"
        )
    return [OUTPUTS]


def classifications(
    num_examples: int, outputs: Mapping[str, Array]
) -> tuple[Array | None, Array | None]:
    """(labels [B,C] of bytes, scores [B,C] float32) from a classify run; either may be None."""
    labels = outputs.get(CLASSES)
    scores = outputs.get(SCORES)
    if labels is not None:
        _check_matrix("classes", labels, DataType.DT_STRING, num_examples)
    if scores is not None:
        _check_matrix("scores", scores, DataType.DT_FLOAT, num_examples)
    if labels is not None and scores is not None and labels.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {labels.shape[1]} vs. {scores.shape[1]}"
        )
    return labels, scores


def _check_matrix(what: str, array: Array, dtype: DataType, num_examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {shape_text(array.shape)}"
        )
    if _dtype(array) is not dtype:
        raise invalid_argument(f"Expected {what} Tensor of {dtype.name}. Got: {_dtype(array).name}")
    if array.shape[0] != num_examples:
        raise invalid_argument(
            f"Expected {what} output batch size of {num_examples}. Got: {array.shape[0]}"
        )


def regression(num_examples: int, values: Array) -> Array:
    """The [B] float32 values of a regress run's `outputs` ([B] or [B,1])."""
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"but got {shape_text(values.shape)}"
        )
    if values.shape[0] != num_examples:
        raise invalid_argument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {values.shape[0]}"
        )
    if _dtype(values) is not DataType.DT_FLOAT:
        # Two spaces after the period: TF Serving's text.
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype(values).name}")
    return values.reshape(num_examples)


def _dtype(array: Array) -> DataType:
    try:
        return DataType.from_numpy(array.dtype)
    except ValueError:
        return DataType.DT_INVALID


def shape_text(shape: Sequence[int]) -> str:
    """TensorShape::DebugString: `[2,3]`."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def example_batch(examples: Sequence[bytes]) -> Array:
    """The 1-D DT_STRING tensor of serialized Examples fed to `inputs`; INVALID_ARGUMENT
    `Input is empty.` for none."""
    if not examples:
        raise invalid_argument("Input is empty.")
    batch = np.empty(len(examples), dtype=object)
    batch[:] = examples
    return batch


def debug_string(signature: Signature) -> str:
    """The SignatureDef in protobuf text format, as TF Serving's messages quote it
    (`SignatureDef::DebugString`; map entries sorted by key, defaults left out)."""
    lines: list[str] = []
    for field, specs in (("inputs", signature.inputs), ("outputs", signature.outputs)):
        for alias in sorted(specs):
            lines += [f"{field} {{", f'  key: "{alias}"', "  value {"]
            lines += ["    " + line for line in _tensor_info(specs[alias])]
            lines += ["  }", "}"]
    if signature.method_name:
        lines.append(f'method_name: "{signature.method_name}"')
    return "\n".join(lines) + "\n"


def _tensor_info(spec: TensorSpec) -> list[str]:
    lines = [f'name: "{spec.name}"'] if spec.name else []
    if spec.dtype is not DataType.DT_INVALID:
        lines.append(f"dtype: {spec.dtype.name}")
    if not spec.has_shape:
        return lines
    shape = ["tensor_shape {"]
    if spec.shape is None:
        shape.append("  unknown_rank: true")
    for size in spec.shape or ():
        shape += ["  dim {", f"    size: {size}", "  }"]
    return [*lines, *shape, "}"]
