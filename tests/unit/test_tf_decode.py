"""Predict request JSON -> numpy inputs (contract 1.2, 1.3), fast path and exact walker."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from servoir.errors import Code, ServingError
from servoir.frontends.rest.json_body import parse_json_object
from servoir.frontends.rest.tf_decode import (
    decode_inputs,
    predict_payload,
    read_predict_body,
)
from servoir.types import DataType, Signature, TensorSpec

D = DataType


def sig(**dtypes: DataType) -> Signature:
    inputs = {name: TensorSpec(f"{name}:0", dtype, None) for name, dtype in dtypes.items()}
    return Signature(inputs=inputs, outputs={})


FLOAT = sig(x=D.DT_FLOAT)
TWO = sig(a=D.DT_INT64, b=D.DT_STRING)


def decode(body: bytes, signature: Signature, raw: bool = True) -> dict[str, np.ndarray]:
    parsed = read_predict_body(parse_json_object(body))
    return decode_inputs(parsed, signature, raw_body=body if raw else None)


def error_of(body: bytes, signature: Signature) -> ServingError:
    with pytest.raises(ServingError) as info:
        decode(body, signature)
    return info.value


# ------------------------------------------------------------------------- top-level keys


@pytest.mark.parametrize(
    ("doc", "signature_name", "payload"),
    [
        ({"instances": [1]}, "", (True, [1])),
        ({"inputs": {"x": 1}, "signature_name": "s"}, "s", (False, {"x": 1})),
        ({"inputs": 5, "other": "ignored"}, "", (False, 5)),
    ],
)
def test_read_predict_body(doc: dict[str, Any], signature_name: str, payload: Any) -> None:
    body = read_predict_body(doc)
    assert body.signature_name == signature_name
    assert (body.row_format, predict_payload(doc)[1]) == payload


def test_only_the_signature_name_is_checked_before_the_model_is_known() -> None:
    with pytest.raises(ServingError) as info:
        read_predict_body({"signature_name": 5, "inputs": 1})
    assert info.value.message == (
        'JSON Value: {\n    "signature_name": 5,\n    "inputs": 1\n} not formatted correctly.'
        " 'signature_name' key must be a string value."
    )
    assert read_predict_body({"foo": 1}).signature_name == ""  # keys are checked later


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"instances": [1], "inputs": [1]},
            'JSON Value: {\n    "instances": [\n        1\n    ],\n    "inputs": [\n        1\n'
            "    ]\n} Not formatted correctly expecting only one of 'inputs' or 'instances'"
            " keys to exist ",
        ),
        (
            {"instances": 5},
            "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to be an list/array",
        ),
        (
            {"instances": []},
            "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
        ),
        ({"foo": 1}, "Missing 'inputs' or 'instances' key"),
    ],
)
def test_predict_payload_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ServingError) as info:
        predict_payload(doc)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert info.value.message == message


# ------------------------------------------------------------------------------ success


@pytest.mark.parametrize(
    ("body", "signature", "expected"),
    [
        # Row format, one input: instances are stacked to [N] + instance shape.
        (b'{"instances": [[1,2],[3,4],[5,6]]}', sig(x=D.DT_INT32), {"x": [[1, 2], [3, 4], [5, 6]]}),
        (b'{"instances": [1, 2.0, 3, 5.003]}', FLOAT, {"x": [1.0, 2.0, 3.0, 5.003]}),
        (b'{"instances": [1.0, NaN, Infinity]}', sig(x=D.DT_DOUBLE), {"x": [1.0, np.nan, np.inf]}),
        (b'{"instances": [[[1]], [[2]]]}', sig(x=D.DT_INT64), {"x": [[[1]], [[2]]]}),
        (b'{"instances": [true, false]}', sig(x=D.DT_BOOL), {"x": [True, False]}),
        (b'{"instances": ["a", "\xc3\xa9"]}', sig(x=D.DT_STRING), {"x": [b"a", b"\xc3\xa9"]}),
        (
            b'{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ"}]}',
            sig(x=D.DT_STRING),
            {"x": [b"hello", b"world"]},
        ),
        (b'{"instances": [[{"b64": "aGk="}]]}', sig(x=D.DT_STRING), {"x": [[b"hi"]]}),
        # Row format, several inputs: one object per instance.
        (
            b'{"instances": [{"a": [1, 2], "b": "x"}, {"b": "y", "a": [3, 4]}]}',
            TWO,
            {"a": [[1, 2], [3, 4]], "b": [b"x", b"y"]},
        ),
        (b'{"instances": [{"x": [1.5, 2]}]}', FLOAT, {"x": [[1.5, 2.0]]}),
        # Columnar: any shape, scalars stay rank 0, extra keys ignored.
        (b'{"inputs": [[1,2],[3,4]]}', sig(x=D.DT_INT32), {"x": [[1, 2], [3, 4]]}),
        (b'{"inputs": 5}', FLOAT, {"x": 5.0}),
        (b'{"inputs": {"x": [[]]}}', FLOAT, {"x": [[]]}),
        (b'{"inputs": [[], []]}', sig(x=D.DT_INT32), {"x": [[], []]}),
        (b'{"inputs": {"b64": "aGk="}}', sig(x=D.DT_STRING), {"x": b"hi"}),
        (
            b'{"inputs": {"a": 7, "b": ["p", "q"], "zz": "extra"}}',
            TWO,
            {"a": 7, "b": [b"p", b"q"]},
        ),
        # Integer dtypes: 8/16-bit values are cast as TF casts int_val (wrapping).
        (b'{"inputs": [300, -1]}', sig(x=D.DT_UINT8), {"x": [44, 255]}),
        (b'{"inputs": [2147483647, -2147483648]}', sig(x=D.DT_INT32), {"x": [2**31 - 1, -(2**31)]}),
        (b'{"inputs": [9223372036854775807]}', sig(x=D.DT_INT64), {"x": [2**63 - 1]}),
        (b'{"inputs": [4294967295]}', sig(x=D.DT_UINT32), {"x": [2**32 - 1]}),
        (b'{"inputs": [18446744073709551615, 0]}', sig(x=D.DT_UINT64), {"x": [2**64 - 1, 0]}),
        # Integers and huge numbers are fine for floats; beyond float32's range is inf.
        (b'{"inputs": [1, 16777217, 1e39]}', FLOAT, {"x": [1.0, 16777216.0, np.inf]}),
        # An empty tensor of a dtype JSON cannot carry is still a tensor.
        (b'{"inputs": []}', sig(x=D.DT_HALF), {"x": []}),
    ],
)
def test_decodes(body: bytes, signature: Signature, expected: dict[str, Any]) -> None:
    result = decode(body, signature)
    assert sorted(result) == sorted(expected)
    for name, value in expected.items():
        dtype = signature.inputs[name].dtype.numpy()
        want = np.array(value, dtype=dtype) if dtype != np.dtype(object) else _objects(value)
        got = result[name]
        assert got.dtype == dtype, name
        assert got.shape == want.shape, name
        if dtype.kind == "f":
            np.testing.assert_array_equal(got, want)
        else:
            assert got.tolist() == want.tolist(), name


def _objects(value: Any) -> np.ndarray:
    shape = np.shape(np.array(value, dtype=object)) if not isinstance(value, bytes) else ()
    out = np.empty(shape, dtype=object)
    out[...] = value
    return out


# ------------------------------------------------------------------------------- errors

_WRAP = "Failed to process element: {} of 'instances' list. Error: INVALID_ARGUMENT: "


@pytest.mark.parametrize(
    ("body", "signature", "message"),
    [
        # Between instances (row format wraps the inner status text).
        (
            b'{"instances": [[1,2],[3,4],[5,6,7]]}',
            sig(x=D.DT_INT32),
            _WRAP.format(2) + "Expecting tensor size: 2 but got: 3",
        ),
        (
            b'{"instances": [[1,2],[3,4],[[5,6]]]}',
            sig(x=D.DT_INT32),
            _WRAP.format(2) + "Expecting shape [2] but got: [1,2]",
        ),
        (b'{"instances": [1, [1]]}', FLOAT, _WRAP.format(1) + "Expecting shape [] but got: [1]"),
        # Within one value (columnar returns these bare).
        (
            b'{"inputs": [[1,2],[3]]}',
            FLOAT,
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (b'{"inputs": [1,[2]]}', FLOAT, "Encountered list at unexpected level: 1 expected < 1"),
        (
            b'{"inputs": [[1,2],3]}',
            FLOAT,
            "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        (
            b'{"instances": [[[1,2],[3]]]}',
            FLOAT,
            _WRAP.format(0) + "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        # Types.
        (
            b'{"instances": [[1,2],["a","b"]]}',
            sig(x=D.DT_INT32),
            _WRAP.format(1) + 'JSON Value: "a" Type: String is not of expected type: int32',
        ),
        (
            b'{"inputs": [1.0, true]}',
            FLOAT,
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            b'{"inputs": [[0.5, false]]}',
            sig(x=D.DT_DOUBLE),
            "JSON Value: false Type: False is not of expected type: double",
        ),
        (
            b'{"inputs": [null]}',
            FLOAT,
            "JSON Value: null Type: Null is not of expected type: float",
        ),
        (
            b'{"inputs": ["1.5"]}',
            FLOAT,
            'JSON Value: "1.5" Type: String is not of expected type: float',
        ),
        (
            b'{"inputs": [{"b64": "aGk="}]}',
            FLOAT,
            'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of expected type: float',
        ),
        (
            b'{"inputs": [[1]]}',
            sig(x=D.DT_STRING),
            "JSON Value: 1 Type: Number is not of expected type: string",
        ),
        (
            b'{"inputs": [1.0]}',
            sig(x=D.DT_INT32),
            "JSON Value: 1.0 Type: Number is not of expected type: int32",
        ),
        (
            b'{"inputs": [2147483648]}',
            sig(x=D.DT_INT16),
            "JSON Value: 2147483648 Type: Number is not of expected type: int16",
        ),
        (
            b'{"inputs": [9223372036854775808]}',
            sig(x=D.DT_INT64),
            "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64",
        ),
        (
            b'{"inputs": [-1]}',
            sig(x=D.DT_UINT32),
            "JSON Value: -1 Type: Number is not of expected type: uint32",
        ),
        (
            b'{"inputs": [4294967296]}',
            sig(x=D.DT_UINT32),
            "JSON Value: 4294967296 Type: Number is not of expected type: uint32",
        ),
        (
            b'{"inputs": [-1]}',
            sig(x=D.DT_UINT64),
            "JSON Value: -1 Type: Number is not of expected type: uint64",
        ),
        (
            b'{"inputs": [1, 0]}',
            sig(x=D.DT_BOOL),
            "JSON Value: 1 Type: Number is not of expected type: bool",
        ),
        (
            b'{"inputs": [true, 1]}',
            sig(x=D.DT_BOOL),
            "JSON Value: 1 Type: Number is not of expected type: bool",
        ),
        # base64.
        (b'{"inputs": [{"b64": "@@@"}]}', sig(x=D.DT_STRING), "Unable to base64 decode"),
        (
            b'{"inputs": [{"b64": 5}]}',
            sig(x=D.DT_STRING),
            'JSON Value: {\n    "b64": 5\n} not formatted correctly for base64 data',
        ),
        # Names and structure.
        (
            b'{"instances": [{"a": [1], "c": "x"}]}',
            TWO,
            "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT:"
            " JSON object: does not have named input: c",
        ),
        (
            b'{"instances": [{"a": [1], "b": "x"}, {"a": [2]}]}',
            TWO,
            "Failed to process element: 1 of 'instances' list. JSON object: {\n    \"a\": [\n"
            "        2\n    ]\n} keys must be equal to: a,b",
        ),
        (
            b'{"instances": [{"a": [1], "b": 2}]}',
            TWO,
            "Failed to process element: 0 key: b of 'instances' list. Error: INVALID_ARGUMENT:"
            " JSON Value: 2 Type: Number is not of expected type: string",
        ),
        (
            b'{"instances": [[1, 2]]}',
            TWO,
            "instances is a plain list, but expecting list of objects as multiple input tensors"
            " required as per tensorinfo_map",
        ),
        (
            b'{"instances": [{"a": [1], "b": "x"}, [1]]}',
            TWO,
            "Expecting object but got list at item 1 of input list",
        ),
        (
            b'{"instances": [[1], {"x": [1]}]}',
            FLOAT,
            "Expecting value/list but got object at item 1 of input list",
        ),
        (b'{"inputs": {"a": 1}}', TWO, "Missing named input: b in 'inputs' object."),
        (b'{"inputs": {"y": 1}}', FLOAT, "Missing named input: x in 'inputs' object."),
        (
            b'{"inputs": [1]}',
            TWO,
            "inputs is a plain value/list, but expecting an object as multiple input tensors"
            " required as per tensorinfo_map",
        ),
        (
            b'{"inputs": 1}',
            Signature(inputs={}, outputs={}),
            "Failed to get input map for signature: DEFAULT",
        ),
        # Deeply nested values are errors, never RecursionError.
        (
            b'{"inputs": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}",
            FLOAT,
            "Tensor rank 900 exceeds the maximum of 64",
        ),
    ],
)
def test_decode_errors(body: bytes, signature: Signature, message: str) -> None:
    error = error_of(body, signature)
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == message


@pytest.mark.parametrize(
    ("body", "signature", "message"),
    [
        (b'{"inputs": [1.5]}', sig(x=D.DT_HALF), "Conversion of JSON Value: 1.5 to type: half"),
        (b'{"inputs": 1}', sig(x=D.DT_BFLOAT16), "Conversion of JSON Value: 1 to type: bfloat16"),
        (
            b'{"inputs": [[1]]}',
            sig(x=D.DT_COMPLEX64),
            "Conversion of JSON Value: 1 to type: complex64",
        ),
        (b'{"inputs": []}', sig(x=D.DT_BFLOAT16), "Conversion of JSON Value: [] to type: bfloat16"),
    ],
)
def test_unsupported_dtypes_are_unimplemented(
    body: bytes, signature: Signature, message: str
) -> None:
    error = error_of(body, signature)
    assert error.code is Code.UNIMPLEMENTED  # HTTP 501
    assert error.message == message


def test_row_format_wraps_unimplemented_as_invalid_argument() -> None:
    error = error_of(b'{"instances": [1.5]}', sig(x=D.DT_HALF))
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED:"
        " Conversion of JSON Value: 1.5 to type: half"
    )


@pytest.mark.parametrize(
    ("body", "dtype"),
    [
        (b'{"instances": [1.5, true]}', D.DT_FLOAT),
        (b'{"instances": [1.5, true]}', D.DT_DOUBLE),
        (b'{"instances": [[1, 2], [false, 3]]}', D.DT_FLOAT),
        (b'{"instances": [[1, 2], [false, 3]]}', D.DT_INT32),
        (b'{"instances": [[1, 2], [false, 3]]}', D.DT_INT64),
        (b'{"inputs": {"x": [true]}}', D.DT_FLOAT),
        (b'{"inputs": {"x": [0, true]}}', D.DT_UINT8),
        (b'{"instances": [{"x": [1.5, true]}]}', D.DT_FLOAT),
    ],
)
def test_bools_never_pass_as_numbers(body: bytes, dtype: DataType) -> None:
    """numpy reads [1.5, true] as floats; the raw-body check sends it to the exact walker."""
    error = error_of(body, sig(x=dtype))
    assert error.code is Code.INVALID_ARGUMENT
    assert "Type: True is not" in error.message or "Type: False is not" in error.message


def test_without_raw_body_the_fast_path_is_documented_lenient() -> None:
    result = decode(b'{"inputs": [1.5, true]}', FLOAT, raw=False)
    assert result["x"].tolist() == [1.5, 1.0]


def test_fast_and_exact_paths_agree() -> None:
    """A body mentioning `true` anywhere takes the exact walker; results must be identical."""
    values = np.random.default_rng(0).random((3, 4)).astype(np.float32).tolist()
    for doc in ({"instances": values}, {"inputs": {"x": values}}):
        fast = decode(orjson.dumps(doc), FLOAT)["x"]
        exact = decode(orjson.dumps({**doc, "note": "true"}), FLOAT)["x"]
        assert fast.dtype == exact.dtype == np.float32
        np.testing.assert_array_equal(fast, exact)


def test_deep_valid_nesting_in_instances_is_a_400() -> None:
    body = b'{"instances": [' + b"[" * 1000 + b"1" + b"]" * 1000 + b"]}"
    error = error_of(body, FLOAT)
    assert error.code is Code.INVALID_ARGUMENT
