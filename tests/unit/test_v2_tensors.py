"""V2 tensor data <-> numpy: raw bytes, JSON/typed values, and the V2-level checks."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from servoir.errors import Code, ServingError
from servoir.frontends.v2.datatypes import (
    DATATYPES,
    check_datatype,
    numpy_dtype,
    platform_name,
    v2_name,
    v2_name_of_array,
)
from servoir.frontends.v2.tensors import (
    check_shape,
    from_raw,
    from_values,
    serialize_bytes,
    to_raw,
    to_values,
)
from servoir.types import DataType
from tests.v2_models import sample

NUMERIC = [d for d in DATATYPES if d not in ("BYTES", "BF16")]


def invalid(fn: Any, *args: Any) -> str:
    with pytest.raises(ServingError) as e:
        fn(*args)
    assert e.value.code is Code.INVALID_ARGUMENT
    return e.value.message


# ---- datatypes ------------------------------------------------------------------------------


def test_every_v2_datatype_maps_to_one_servoir_dtype_and_back() -> None:
    names = {v2_name(DataType[f"DT_{n}"]) for n in ("FLOAT", "HALF", "STRING", "UINT64", "BOOL")}
    assert names == {"FP32", "FP16", "BYTES", "UINT64", "BOOL"}
    for datatype in NUMERIC:
        dtype = numpy_dtype(datatype)
        assert v2_name_of_array(dtype) == datatype
    assert v2_name_of_array(np.dtype(object)) == "BYTES"
    assert v2_name(DataType.DT_BFLOAT16) == "BF16"


def test_unknown_and_unsupported_datatypes_name_the_input() -> None:
    assert check_datatype("x", "FP32") == "FP32"
    assert invalid(check_datatype, "x", "FP8").startswith("input 'x': unknown datatype FP8")
    assert invalid(check_datatype, "x", 3).startswith("input 'x': unknown datatype 3")
    assert invalid(check_datatype, "x", "BF16") == "input 'x': datatype BF16 is not supported"


def test_platform_names_follow_triton() -> None:
    assert platform_name("onnx") == "onnxruntime_onnx"
    assert platform_name("tensorflow") == "tensorflow_savedmodel"
    assert platform_name("pytorch") == "pytorch_libtorch"  # TorchServable.platform
    assert platform_name("something") == "something"


def test_bfloat16_outputs_are_bf16() -> None:
    # TensorFlow returns bfloat16 as ml_dtypes' numpy type, which has no buffer protocol.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([[1.5, -2.0]], dtype=ml_dtypes.bfloat16)
    assert v2_name_of_array(array.dtype) == "BF16"
    assert bytes(to_raw(array)) == array.view(np.uint16).astype("<u2").tobytes()
    assert to_values("bf", array).tolist() == [1.5, -2.0]


# ---- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[-1, 2], "12", [1.0], [True], None, {"a": 1}])
def test_bad_shapes(shape: object) -> None:
    message = invalid(check_shape, "x", shape)
    assert message == "input 'x': shape must be a list of non-negative integers"


def test_good_shapes() -> None:
    assert check_shape("x", [2, 0, 3]) == (2, 0, 3)
    assert check_shape("x", []) == ()


# ---- raw bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_round_trip_is_little_endian_row_major(datatype: str) -> None:
    array = sample(datatype, (2, 3))
    raw = bytes(to_raw(array))
    assert raw == array.astype(numpy_dtype(datatype)).tobytes()
    decoded = from_raw("x", datatype, (2, 3), raw)
    assert decoded.dtype == numpy_dtype(datatype)
    np.testing.assert_array_equal(decoded, array)


def test_raw_reads_at_any_offset_without_a_copy() -> None:
    body = b"{json}" + np.arange(4, dtype="<f4").tobytes()
    view = memoryview(body)[6:]
    decoded = from_raw("x", "FP32", (2, 2), view)
    np.testing.assert_array_equal(decoded, [[0, 1], [2, 3]])
    assert not decoded.flags.owndata


def test_raw_size_must_match_shape_and_datatype() -> None:
    message = invalid(from_raw, "x", "FP32", (1, 784), b"\0" * 12)
    assert (
        message
        == "input 'x': shape [1,784] with datatype FP32 needs 3136 bytes but the data has 12"
    )


def test_bytes_raw_matches_tritonclient_serialization() -> None:
    array = sample("BYTES", (2, 3))
    raw = serialize_byte_tensor(array).item()
    assert serialize_bytes(array) == raw
    decoded = from_raw("s", "BYTES", (2, 3), raw)
    assert decoded.shape == (2, 3)
    assert decoded.tolist() == array.tolist()
    np.testing.assert_array_equal(deserialize_bytes_tensor(bytes(to_raw(array))), array.ravel())


def test_bytes_raw_errors() -> None:
    two = struct.pack("<I", 1) + b"a" + struct.pack("<I", 2) + b"bc"
    assert invalid(from_raw, "s", "BYTES", (3,), two) == (
        "input 's': shape [3] needs 3 BYTES elements but the data (11 bytes) cannot hold that many"
    )
    assert invalid(from_raw, "s", "BYTES", (2,), two[:-1]).startswith(
        "input 's': BYTES data ends inside element 1 of 2"
    )
    assert invalid(from_raw, "s", "BYTES", (1,), two) == (
        "input 's': BYTES data has 6 bytes left over after the 1 elements of shape [1]"
    )


def test_a_huge_claimed_shape_is_refused_before_any_allocation() -> None:
    message = invalid(from_raw, "s", "BYTES", (10**6, 10**6), b"\0" * 8)
    assert "needs 1000000000000 BYTES elements" in message
    message = invalid(from_values, "x", "FP32", (10**6, 10**6), [1.0])
    assert message.endswith("needs 1000000000000 elements but data has 1")


def test_empty_tensors() -> None:
    assert from_raw("x", "FP32", (0, 3), b"").shape == (0, 3)
    assert from_values("x", "INT64", (0, 3), []).shape == (0, 3)
    assert from_values("s", "BYTES", (0,), []).shape == (0,)
    assert bytes(to_raw(np.zeros((0, 3), np.float32))) == b""


# ---- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", NUMERIC)
def test_values_flat_and_nested(datatype: str) -> None:
    array = sample(datatype, (2, 3))
    flat = from_values("x", datatype, (2, 3), array.ravel().tolist())
    nested = from_values("x", datatype, (2, 3), array.tolist())
    assert flat.dtype == nested.dtype == numpy_dtype(datatype)
    np.testing.assert_array_equal(flat, array)
    np.testing.assert_array_equal(nested, array)


def test_size_mismatch_names_the_input_shape_and_count() -> None:
    message = invalid(from_values, "x", "FP32", (1, 784), [1.0, 2.0, 3.0])
    assert message == "input 'x': shape [1,784] needs 784 elements but data has 3"


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [
        ("INT32", [1.5, 2.0], "input 'x': data for datatype INT32 must be integers"),
        ("BOOL", [1, 0], "input 'x': data for datatype BOOL must be true or false"),
        ("FP32", ["a", "b"], "input 'x': data for datatype FP32 must be numbers"),
        ("FP32", [True, False], "input 'x': data for datatype FP32 must be numbers"),
        ("UINT8", [1, 256], "input 'x': a value is out of range for UINT8 [0, 255]"),
        ("INT8", [-129, 0], "input 'x': a value is out of range for INT8 [-128, 127]"),
        ("UINT64", [-1, 2**64 - 1], "input 'x': a value is out of range for UINT64 [0, "),
        ("UINT64", [1.5, 2**64 - 1], "input 'x': data for datatype UINT64 must be integers"),
        ("INT64", [[1, 2], [3]], "input 'x': data is not a rectangular array"),
    ],
)
def test_bad_values(datatype: str, values: Any, message: str) -> None:
    assert invalid(from_values, "x", datatype, (2,), values).startswith(message)


def test_uint64_above_int64_is_exact() -> None:
    values = [5, 2**64 - 1]
    decoded = from_values("x", "UINT64", (2,), values)
    assert decoded.dtype == np.uint64
    assert decoded.tolist() == values


def test_bytes_values_are_utf8_strings_or_bytes() -> None:
    decoded = from_values("s", "BYTES", (2, 1), [["\u00e9"], ["b"]])
    assert decoded.tolist() == [["\u00e9".encode()], [b"b"]]
    assert from_values("s", "BYTES", (2,), [b"\0\xff", b""]).tolist() == [b"\0\xff", b""]
    message = invalid(from_values, "s", "BYTES", (2,), ["a", 1])
    assert message == "input 's': data for datatype BYTES must be strings"


def test_to_values() -> None:
    values = to_values("y", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert values.tolist() == [0, 1, 2, 3, 4, 5]
    assert to_values("s", np.array([b"a", "b"], dtype=object)) == ["a", "b"]
    message = invalid(to_values, "s", np.array([b"\xff"], dtype=object))
    assert message.startswith("output 's' holds bytes that are not UTF-8 text")
