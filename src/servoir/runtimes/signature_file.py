"""`signature.json`: the declared inputs and outputs of a model that carries no named signature.

TorchScript modules, torch.export programs and Python models say nothing (or not enough)
about the names, dtypes and shapes a client should send, so the model directory declares
them:

    {
      "inputs":  [{"name": "x", "dtype": "DT_FLOAT", "shape": [-1, 3]}],
      "outputs": [{"name": "y", "dtype": "float", "shape": [-1, 2]}],
      "method_name": "tensorflow/serving/predict"
    }

`dtype` takes TensorFlow's DataType names (DT_FLOAT) or short names (float, int64, string);
`shape` lists dims with -1 for a dim of any size, and may be left out (or null) for any rank;
`method_name` is optional. The order of `inputs` is the order of the model's arguments.
Every problem is reported with where it is, so an operator can fix the file from the
version's status alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from servoir.types import PREDICT_METHOD, Array, DataType, Signature, TensorSpec

SIGNATURE_FILE = "signature.json"

_TOP_KEYS = {"inputs", "outputs", "method_name"}
_TENSOR_KEYS = {"name", "dtype", "shape"}
# Names people write that are not TensorFlow's: numpy's spelling of the common types.
_ALIASES = {
    "float32": DataType.DT_FLOAT,
    "float64": DataType.DT_DOUBLE,
    "float16": DataType.DT_HALF,
}


class SignatureFileError(ValueError):
    """A signature file or dict that does not describe a signature; the text says where."""


def read_signature_file(path: Path) -> Signature:
    """Parse `<version>/signature.json`. Messages name the file, never its directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SignatureFileError(f"{SIGNATURE_FILE} not found in the version directory") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise SignatureFileError(f"{SIGNATURE_FILE} cannot be read: {reason}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SignatureFileError(
            f"{SIGNATURE_FILE} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    return parse_signature(doc, SIGNATURE_FILE)


def parse_signature(doc: Any, where: str = SIGNATURE_FILE) -> Signature:
    """A Signature from the decoded JSON object (or the same structure written in Python)."""
    if not isinstance(doc, Mapping):
        raise SignatureFileError(f"{where}: expected an object with inputs and outputs")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SignatureFileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    inputs = _tensors(doc, "inputs", where)
    outputs = _tensors(doc, "outputs", where)
    method = doc.get("method_name", PREDICT_METHOD)
    if not isinstance(method, str) or not method:
        raise SignatureFileError(f"{where}: method_name must be a non-empty string")
    return Signature(inputs, outputs, method)


def _tensors(doc: Mapping[str, Any], key: str, where: str) -> dict[str, TensorSpec]:
    entries = doc.get(key)
    if not isinstance(entries, list) or not entries:
        raise SignatureFileError(f"{where}: {key} must be a non-empty list of tensors")
    specs: dict[str, TensorSpec] = {}
    for i, entry in enumerate(entries):
        spec = _tensor(entry, f"{where}: {key}[{i}]")
        if spec.name in specs:
            raise SignatureFileError(f"{where}: {key} names {spec.name!r} twice")
        specs[spec.name] = spec
    return specs


def _tensor(entry: Any, where: str) -> TensorSpec:
    if not isinstance(entry, Mapping):
        raise SignatureFileError(f"{where} must be an object with name, dtype and shape")
    unknown = sorted(set(entry) - _TENSOR_KEYS)
    if unknown:
        raise SignatureFileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise SignatureFileError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name})"
    if "dtype" not in entry:
        raise SignatureFileError(f"{where}: dtype is missing")
    return TensorSpec(name, parse_dtype(entry["dtype"], where), _shape(entry.get("shape"), where))


def parse_dtype(value: Any, where: str) -> DataType:
    if isinstance(value, str):
        text = value.strip()
        if text.upper().startswith("DT_") and text.upper() in DataType.__members__:
            dtype = DataType[text.upper()]
            if dtype is not DataType.DT_INVALID:
                return dtype
        for dtype in DataType:
            if dtype is not DataType.DT_INVALID and dtype.short_name == text.lower():
                return dtype
        if text.lower() in _ALIASES:
            return _ALIASES[text.lower()]
    raise SignatureFileError(
        f"{where}: dtype {value!r} is not a known type (write e.g. DT_FLOAT, float, int64, string)"
    )


def _shape(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    # bool is an int in Python; a `true` in a shape is a typo, not a dim of 1.
    if not isinstance(value, list) or any(
        not isinstance(d, int) or isinstance(d, bool) or d < -1 for d in value
    ):
        raise SignatureFileError(
            f"{where}: shape must be a list of dims, each >= 0 or -1 for any size (got {value!r})"
        )
    return tuple(value)


def declared_output(alias: str, value: Any, spec: TensorSpec) -> Array:
    """`value` as an array of the declared dtype, or a ValueError saying how it differs.

    Values are cast only within a kind (float64 -> float, int -> float): a model that
    answers floats for an int64 output is wrong, and the client must not see it silently
    truncated. Integers narrow only when every value fits (int64 1000 is no int8).
    Strings come back as bytes, as every front end expects.
    """
    if spec.dtype is DataType.DT_STRING:
        array = np.asarray(value, dtype=object)
        if array.size:
            array = np.vectorize(_to_bytes, otypes=[object])(array)
    else:
        array = _numeric_output(alias, value, spec)
    if spec.shape is not None and (
        array.ndim != len(spec.shape)
        or any(d not in (-1, n) for d, n in zip(spec.shape, array.shape, strict=True))
    ):
        raise ValueError(
            f"output {alias!r} has shape {list(array.shape)} but the signature declares "
            f"{list(spec.shape)}"
        )
    return array


def _numeric_output(alias: str, value: Any, spec: TensorSpec) -> Array:
    array = np.asarray(value)
    want = spec.dtype.numpy()
    if array.dtype != want:
        if array.dtype.kind in "OSU" or not np.can_cast(array.dtype, want, "same_kind"):
            raise ValueError(
                f"output {alias!r} is {array.dtype} but the signature declares "
                f"{spec.dtype.short_name}"
            )
        if array.dtype.kind in "iu" and want.kind in "iu" and array.size:
            limits = np.iinfo(want.name)
            if array.min() < limits.min or array.max() > limits.max:
                raise ValueError(
                    f"output {alias!r} holds values out of the range of the declared "
                    f"{spec.dtype.short_name} ({array.min()} to {array.max()})"
                )
        array = array.astype(want)
    return array


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise ValueError(f"string output holds a {type(item).__name__}, not str or bytes")
