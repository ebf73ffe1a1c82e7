"""The V2 REST body: JSON tensors, the binary tensor data extension, and their 400s."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from tritonclient.http import InferResult

from servoir.errors import Code, ServingError
from servoir.frontends.v2.api import InferResponse
from servoir.frontends.v2.rest_codec import OutputFormat, decode_infer, encode_infer
from servoir.types import ModelSpec


def body(doc: dict[str, Any], *raw: bytes) -> tuple[bytes, bytes | None]:
    header = json.dumps(doc).encode()
    if not raw:
        return header, None
    return header + b"".join(raw), str(len(header)).encode()


def error(doc: dict[str, Any] | bytes, *raw: bytes, header: bytes | None = None) -> str:
    if isinstance(doc, bytes):
        data, length = doc, header
    else:
        data, length = body(doc, *raw)
        length = header if header is not None else length
    with pytest.raises(ServingError) as e:
        decode_infer(data, length, "m", None)
    assert e.value.code is Code.INVALID_ARGUMENT
    return e.value.message


F32 = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_json_request() -> None:
    doc = {
        "id": "r1",
        "parameters": {"signature_name": "other", "timeout": 2_500_000, "priority": 3},
        "inputs": [
            {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": F32.tolist()},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
        ],
        "outputs": [{"name": "y"}, {"name": "z", "parameters": {"binary_data": True}}],
    }
    request, fmt = decode_infer(*body(doc), "m", 3)
    assert request.model == ModelSpec("m", 3, signature_name="other")
    assert request.id == "r1"
    assert request.timeout_s == 2.5
    assert request.outputs == ("y", "z")
    assert [(t.name, t.datatype) for t in request.inputs] == [("a", "FP32"), ("s", "BYTES")]
    np.testing.assert_array_equal(request.inputs[0].array, F32)
    assert request.inputs[1].array.tolist() == [b"hi"]
    assert not fmt.is_binary("y") and fmt.is_binary("z")


def test_binary_inputs_follow_the_json_in_input_order() -> None:
    ints = np.array([7, 8], dtype=np.int64)
    doc = {
        "inputs": [
            {
                "name": "a",
                "shape": [2, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 24},
            },
            {"name": "j", "shape": [1], "datatype": "INT32", "data": [5]},
            {
                "name": "b",
                "shape": [2],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 16},
            },
        ],
        "parameters": {"binary_data_output": True},
    }
    request, fmt = decode_infer(*body(doc, F32.tobytes(), ints.tobytes()), "m", None)
    arrays = {t.name: t.array for t in request.inputs}
    np.testing.assert_array_equal(arrays["a"], F32)
    np.testing.assert_array_equal(arrays["b"], ints)
    assert arrays["j"].tolist() == [5]
    assert fmt.is_binary("anything")


def test_per_output_binary_data_overrides_the_request_default() -> None:
    doc = {
        "inputs": [],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
    }
    _, fmt = decode_infer(*body(doc), "m", None)
    assert not fmt.is_binary("y") and fmt.is_binary("z")


BIN = {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}


def test_header_length_larger_than_the_body() -> None:
    data = json.dumps({"inputs": [BIN]}).encode() + b"\0" * 8
    message = error(data, header=str(len(data) + 1).encode())
    assert message == (
        f"Inference-Header-Content-Length ({len(data) + 1}) is larger than the request body "
        f"({len(data)} bytes)"
    )
    assert error(data, header=b"12x") == (
        "Inference-Header-Content-Length must be a non-negative integer"
    )


def test_binary_sizes_must_add_up_to_the_binary_part() -> None:
    assert error({"inputs": [BIN]}, b"\0" * 12) == (
        "the inputs' binary_data_size add up to 8 bytes but the body carries 12 bytes after "
        "the JSON header"
    )
    assert error({"inputs": [BIN, BIN]}, b"\0" * 12) == (
        "input 'a': binary_data_size 8 runs past the end of the body (4 bytes of binary data left)"
    )
    small = dict(BIN, parameters={"binary_data_size": 4})
    assert error({"inputs": [small]}, b"\0" * 4) == (
        "input 'a': shape [2] with datatype FP32 needs 8 bytes but the data has 4"
    )


def test_binary_data_without_the_header_is_caught() -> None:
    # No Inference-Header-Content-Length: the whole body must be the JSON.
    data = json.dumps({"inputs": [BIN]}).encode()
    assert error(data).startswith("input 'a': binary_data_size 8 runs past the end of the body")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": {}}, "'inputs' must be a list of tensors"),
        ({"inputs": [{"shape": [1]}]}, "every input must be an object with a string 'name'"),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]},
            "input 'a' has neither 'data' nor binary_data_size",
        ),
        (
            {"inputs": [dict(BIN, data=[1.0, 2.0])]},
            "input 'a' has both 'data' and binary_data_size",
        ),
        (
            {"inputs": [dict(BIN, parameters={"binary_data_size": -8})]},
            "input 'a': binary_data_size must be a non-negative integer",
        ),
        (
            {"inputs": [dict(BIN, parameters={"shared_memory_region": "r"})]},
            "input 'a': shared memory is not supported",
        ),
        (
            {"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 2}}]},
            "output 'y': the classification extension is not supported",
        ),
        ({"inputs": [], "outputs": [{"name": 3}]}, "every requested output must be an object"),
        ({"inputs": [], "id": 7}, "'id' must be a string"),
        ({"inputs": [], "parameters": []}, "request: 'parameters' must be a JSON object"),
        ({"inputs": [], "parameters": {"timeout": "1s"}}, "parameter 'timeout' must be"),
        ({"inputs": [], "parameters": {"binary_data_output": 1}}, "request: parameter"),
    ],
)
def test_malformed_requests(doc: dict[str, Any], message: str) -> None:
    assert error(doc).startswith(message)


def test_body_that_is_not_a_json_object() -> None:
    assert error(b"[1]") == "the inference request must be a JSON object"
    assert error(b"{").startswith("the inference request is not valid JSON")


RESPONSE = InferResponse(
    "m",
    "2",
    "r9",
    {
        "y": F32,
        "s": np.array([[b"a", b"\xc3\xa9"]], dtype=object),
        "h": np.array([0.5, -2.0], dtype=np.float16),
    },
)


def test_json_response_has_no_binary_header() -> None:
    data, headers = encode_infer(RESPONSE, OutputFormat())
    assert headers == [(b"content-type", b"application/json")]
    doc = json.loads(data)
    assert doc["model_name"] == "m" and doc["model_version"] == "2" and doc["id"] == "r9"
    assert doc["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": [0, 1, 2, 3, 4, 5],
    }
    assert doc["outputs"][1]["data"] == ["a", "\u00e9"]
    assert doc["outputs"][2]["datatype"] == "FP16"


def test_binary_response_reads_back_with_tritonclient() -> None:
    data, headers = encode_infer(RESPONSE, OutputFormat(True, {"h": False}))
    length = dict(headers)[b"inference-header-content-length"]
    assert dict(headers)[b"content-type"] == b"application/octet-stream"
    header = json.loads(data[: int(length)])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 24}
    result = InferResult.from_response_body(data, header_length=int(length))
    np.testing.assert_array_equal(result.as_numpy("y"), F32)
    assert result.as_numpy("s").tolist() == [[b"a", "\u00e9".encode()]]
    np.testing.assert_array_equal(result.as_numpy("h"), RESPONSE.outputs["h"])


@pytest.mark.parametrize(
    ("datatype", "data", "wanted"),
    [
        ("INT32", [True, 1], "integers"),
        ("FP32", [True, 1.5], "numbers"),
        ("INT64", [[1, 2], [False, 4]], "integers"),
    ],
)
def test_true_and_false_among_numbers_are_refused(datatype: str, data: Any, wanted: str) -> None:
    # numpy would read them as 1 and 0; the same data all booleans is refused already.
    doc = {
        "inputs": [
            {
                "name": "n",
                "shape": [len(data)]
                if not isinstance(data[0], list)
                else [len(data), len(data[0])],
                "datatype": datatype,
                "data": data,
            }
        ]
    }
    assert error(doc) == f"input 'n': data for datatype {datatype} must be {wanted}"


def test_booleans_elsewhere_in_the_body_do_not_refuse_numbers() -> None:
    doc = {
        "inputs": [
            {"name": "n", "shape": [2], "datatype": "INT32", "data": [1, 0]},
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    request, _ = decode_infer(*body(doc), "m", None)
    assert [t.array.tolist() for t in request.inputs] == [[1, 0], [True, False]]
