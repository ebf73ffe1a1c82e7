"""The V2 REST inference body: JSON tensors and the binary tensor data extension.

Request: `Inference-Header-Content-Length: N` says the first N bytes are the JSON header; the
rest holds the raw tensors of the inputs whose parameters carry `binary_data_size`, in input
order. Response: outputs asked for as binary (output parameter `binary_data`, or request
parameter `binary_data_output`) carry `binary_data_size` and their bytes follow the JSON, whose
length the response's `Inference-Header-Content-Length` gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from servoir.errors import invalid_argument
from servoir.frontends.rest.json_body import may_hold_bools
from servoir.frontends.v2 import params as p
from servoir.frontends.v2.api import InferRequest, InferResponse, InputTensor, output_datatype
from servoir.frontends.v2.datatypes import check_datatype
from servoir.frontends.v2.tensors import (
    Buffer,
    check_shape,
    from_raw,
    from_values,
    to_raw,
    to_values,
)
from servoir.types import ModelSpec

HEADER_LENGTH = b"inference-header-content-length"
_BINARY = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """Which outputs the client wants as binary."""

    binary_default: bool = False
    binary: Mapping[str, bool] = field(default_factory=dict)

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def decode_infer(
    body: bytes, header_length: bytes | None, model: str, version: int | None
) -> tuple[InferRequest, OutputFormat]:
    json_end = _json_length(body, header_length)
    view = memoryview(body)
    doc = _object(view[:json_end], "the inference request")
    raw_tail = view[json_end:]
    params = _params(doc.get("parameters"), "request")
    bools = may_hold_bools(body if json_end == len(body) else body[:json_end])
    inputs, used = _inputs(doc.get("inputs"), raw_tail, bools)
    if used != len(raw_tail):
        raise invalid_argument(
            f"the inputs' binary_data_size add up to {used} bytes but the body carries "
            f"{len(raw_tail)} bytes after the JSON header"
        )
    outputs, fmt = _outputs(doc.get("outputs"), p.flag(params, "binary_data_output", "request"))
    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise invalid_argument("'id' must be a string")
    spec = ModelSpec(model, version, signature_name=p.signature_name(params))
    request = InferRequest(spec, inputs, outputs, request_id, p.timeout_seconds(params), "v2_rest")
    return request, fmt


def _json_length(body: bytes, header_length: bytes | None) -> int:
    if header_length is None:
        return len(body)
    text = header_length.strip()
    if not text.isdigit():
        raise invalid_argument("Inference-Header-Content-Length must be a non-negative integer")
    length = int(text)
    if length > len(body):
        raise invalid_argument(
            f"Inference-Header-Content-Length ({length}) is larger than the request body "
            f"({len(body)} bytes)"
        )
    return length


def _object(data: memoryview, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise invalid_argument(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"{what} must be a JSON object")
    return doc


def _params(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_argument(f"{where}: 'parameters' must be a JSON object")
    return value


def _inputs(value: object, raw: memoryview, bools: bool) -> tuple[list[InputTensor], int]:
    """The decoded inputs and how many bytes of `raw` they used. `bools`: the JSON may hold
    true/false somewhere."""
    if not isinstance(value, list):
        raise invalid_argument("'inputs' must be a list of tensors")
    inputs: list[InputTensor] = []
    offset = 0
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid_argument("every input must be an object with a string 'name'")
        name: str = item["name"]
        datatype = check_datatype(name, item.get("datatype"))
        shape = check_shape(name, item.get("shape"))
        tensor_params = _params(item.get("parameters"), f"input '{name}'")
        p.check_tensor_parameters("input", name, tensor_params)
        size = tensor_params.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise invalid_argument(f"input '{name}' has both 'data' and binary_data_size")
            if type(size) is not int or size < 0:
                raise invalid_argument(
                    f"input '{name}': binary_data_size must be a non-negative integer"
                )
            if offset + size > len(raw):
                raise invalid_argument(
                    f"input '{name}': binary_data_size {size} runs past the end of the body "
                    f"({len(raw) - offset} bytes of binary data left)"
                )
            chunk: Buffer = raw[offset : offset + size]
            offset += size
            array = from_raw(name, datatype, shape, chunk)
        elif "data" in item:
            array = from_values(name, datatype, shape, item["data"], json_bools=bools)
        else:
            raise invalid_argument(f"input '{name}' has neither 'data' nor binary_data_size")
        inputs.append(InputTensor(name, datatype, array))
    return inputs, offset


def _outputs(value: object, binary_default: bool) -> tuple[tuple[str, ...], OutputFormat]:
    if value is None:
        return (), OutputFormat(binary_default)
    if not isinstance(value, list):
        raise invalid_argument("'outputs' must be a list of requested outputs")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise invalid_argument("every requested output must be an object with a string 'name'")
        name: str = item["name"]
        output_params = _params(item.get("parameters"), f"output '{name}'")
        p.check_tensor_parameters("output", name, output_params)
        if "binary_data" in output_params:
            binary[name] = p.flag(output_params, "binary_data", f"output '{name}'")
        names.append(name)
    return tuple(names), OutputFormat(binary_default, binary)


def encode_infer(response: InferResponse, fmt: OutputFormat) -> tuple[bytes, list[Any]]:
    """The response body and its headers (content type, header length when binary)."""
    outputs: list[dict[str, Any]] = []
    buffers: list[Buffer] = []
    for name, array in response.outputs.items():
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": output_datatype(array),
            "shape": array.shape,
        }
        if fmt.is_binary(name):
            raw = to_raw(array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            tensor["data"] = to_values(name, array)
        outputs.append(tensor)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        doc["id"] = response.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not buffers:
        return header, [(b"content-type", b"application/json")]
    headers = [
        (b"content-type", _BINARY),
        (HEADER_LENGTH, str(len(header)).encode()),
    ]
    return b"".join([header, *buffers]), headers
