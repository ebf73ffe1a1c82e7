"""onnxruntime's run errors as clients see them: the reason, never its source paths or C++."""

from __future__ import annotations

import pytest

from servoir.runtimes.onnx import ort_reason

PREFIX = "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            PREFIX + "Mul node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/"
            "providers/cpu/math/element_wise_ops.h:563 void onnxruntime::BroadcastIterator::"
            "Init(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. Attempting to "
            "broadcast an axis by a dimension other than 1. 2 by 3\n",
            "Mul node: Attempting to broadcast an axis by a dimension other than 1. 2 by 3",
        ),
        (
            PREFIX + "Concat node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/"
            "providers/cpu/tensor/concatbase.h:135 onnxruntime::common::Status onnxruntime::"
            "ConcatBase::PrepareForComputeImpl(onnxruntime::OpKernelContext*, const "
            "onnxruntime::InlinedTensorsVector&, onnxruntime::Prepare&) const Non concat axis "
            "dimensions must match: Axis 0 has mismatched dimensions of 2 and 3\n",
            "Concat node: Non concat axis dimensions must match: Axis 0 has mismatched "
            "dimensions of 2 and 3",
        ),
        (
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x",
            "Got invalid dimensions for input: x",
        ),
    ],
)
def test_ort_reason(text: str, reason: str) -> None:
    assert ort_reason(text) == reason
    assert "onnxruntime_src" not in ort_reason(text)
