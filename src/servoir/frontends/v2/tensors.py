"""Tensor data <-> numpy for both V2 transports, with the V2-level consistency checks.

Two request forms: raw bytes (REST binary extension, gRPC raw_input_contents) are read with
`np.frombuffer` without a copy; values (REST JSON `data`, gRPC typed contents) go through one
`np.asarray`. Nothing is ever allocated from a declared shape alone: sizes are checked against
the data first, so a request claiming a huge shape costs nothing.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from servoir.errors import ServingError, invalid_argument
from servoir.frontends.v2.datatypes import numpy_dtype
from servoir.types import Array

_LENGTH = struct.Struct("<I")
Buffer = bytes | memoryview


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_shape(tensor: str, shape: object) -> tuple[int, ...]:
    """A request shape: a sequence (JSON list, protobuf repeated field) of non-negative ints;
    -1 has no place in a request."""
    # protobuf repeated fields register as Sequence; a JSON list is one
    if isinstance(shape, Sequence) and not isinstance(shape, str | bytes):
        dims = tuple(shape)
        if all(type(d) is int and d >= 0 for d in dims):
            return dims
    raise invalid_argument(f"input '{tensor}': shape must be a list of non-negative integers")


# ---- raw bytes -----------------------------------------------------------------------------


def from_raw(tensor: str, datatype: str, shape: tuple[int, ...], raw: Buffer) -> Array:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_from_raw(tensor, shape, count, raw).reshape(shape)
    dtype = numpy_dtype(datatype)
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise invalid_argument(
            f"input '{tensor}': shape {shape_text(shape)} with datatype {datatype} needs "
            f"{needed} bytes but the data has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _bytes_from_raw(tensor: str, shape: tuple[int, ...], count: int, raw: Buffer) -> Array:
    size = len(raw)
    # Every element carries a 4-byte length: refuse before allocating for the claimed count.
    if count * _LENGTH.size > size:
        raise invalid_argument(
            f"input '{tensor}': shape {shape_text(shape)} needs {count} BYTES elements "
            f"but the data ({size} bytes) cannot hold that many"
        )
    view = memoryview(raw)
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > size:
            raise _truncated(tensor, i, count)
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        end = offset + length
        if end > size:
            raise _truncated(tensor, i, count)
        out[i] = bytes(view[offset:end])
        offset = end
    if offset != size:
        raise invalid_argument(
            f"input '{tensor}': BYTES data has {size - offset} bytes left over after the "
            f"{count} elements of shape {shape_text(shape)}"
        )
    return out


def _truncated(tensor: str, index: int, count: int) -> ServingError:
    return invalid_argument(
        f"input '{tensor}': BYTES data ends inside element {index} of {count} "
        "(each element is a 4-byte little-endian length followed by that many bytes)"
    )


def to_raw(array: Array) -> Buffer:
    """The V2 raw layout of an output; a view (no copy) for contiguous numeric arrays."""
    if array.dtype.kind in "OSU":
        return serialize_bytes(array)
    if array.size == 0:
        return b""  # memoryview refuses to cast views with a zero in the shape
    if array.dtype.name == "bfloat16":  # no buffer protocol: its 2 bytes, as Triton's BF16
        array = array.view(np.uint16)
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).reshape(-1).data.cast("B")


def serialize_bytes(array: Array) -> bytes:
    parts: list[bytes] = []
    for item in array.ravel():
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


# ---- values --------------------------------------------------------------------------------

# Inferred numpy kinds accepted for each target kind: JSON numbers may be ints for a float
# tensor, but a float for an integer tensor or a number for BOOL is an error, not a cast.
_ACCEPTED = MappingProxyType({"f": "fiu", "i": "iu", "u": "iu", "b": "b"})
_WANTED = MappingProxyType({"f": "numbers", "i": "integers", "u": "integers", "b": "true or false"})


def from_values(
    tensor: str, datatype: str, shape: tuple[int, ...], values: Any, *, json_bools: bool = False
) -> Array:
    """Flat or nested values (row-major) of one tensor. `json_bools`: the JSON they came from
    may hold true/false, which numpy would read among numbers as 1/0."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_from_values(tensor, shape, count, values)
    if json_bools and datatype != "BOOL" and _holds_bool(values):
        raise _wrong_values(tensor, datatype, numpy_dtype(datatype))
    try:
        inferred = np.asarray(values)
    except (ValueError, TypeError):
        raise invalid_argument(f"input '{tensor}': data is not a rectangular array") from None
    _check_count(tensor, shape, count, inferred.size)
    dtype = numpy_dtype(datatype)
    if count == 0:
        return np.empty(shape, dtype=dtype)
    if dtype.kind in "iu" and inferred.dtype.kind in "fO":
        # numpy infers float64 for ints beyond int64 (UINT64 data above 2**63): look again.
        return _exact_integers(tensor, datatype, dtype, values).reshape(shape)
    if inferred.dtype.kind not in _ACCEPTED[dtype.kind]:
        raise _wrong_values(tensor, datatype, dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype.str)
        if inferred.min() < info.min or inferred.max() > info.max:
            raise invalid_argument(
                f"input '{tensor}': a value is out of range for {datatype} [{info.min}, {info.max}]"
            )
    return inferred.astype(dtype, copy=False).reshape(shape)


def _holds_bool(values: Any) -> bool:
    if isinstance(values, list) and not (values and isinstance(values[0], list)):
        return any(v is True or v is False for v in values)  # flat data, the common case
    try:
        items = np.asarray(values, dtype=object).ravel().tolist()
    except ValueError:
        return False  # not rectangular: refused later, with that reason
    return any(v is True or v is False for v in items)


def _wrong_values(tensor: str, datatype: str, dtype: np.dtype[np.generic]) -> ServingError:
    return invalid_argument(
        f"input '{tensor}': data for datatype {datatype} must be {_WANTED[dtype.kind]}"
    )


def _out_of_range(tensor: str, datatype: str, dtype: np.dtype[np.generic]) -> ServingError:
    info = np.iinfo(dtype.str)
    return invalid_argument(
        f"input '{tensor}': a value is out of range for {datatype} [{info.min}, {info.max}]"
    )


def _exact_integers(tensor: str, datatype: str, dtype: np.dtype[np.generic], values: Any) -> Array:
    """Integer data numpy could not infer exactly: checked element by element (a rare path)."""
    items = np.array(values, dtype=object).ravel().tolist()
    if not all(type(v) is int for v in items):
        raise _wrong_values(tensor, datatype, dtype)
    try:
        return np.array(items, dtype=dtype)
    except OverflowError:
        raise _out_of_range(tensor, datatype, dtype) from None


def _bytes_from_values(tensor: str, shape: tuple[int, ...], count: int, values: Any) -> Array:
    try:
        items = np.array(values, dtype=object)
    except ValueError:
        raise invalid_argument(f"input '{tensor}': data is not a rectangular array") from None
    _check_count(tensor, shape, count, items.size)
    out = np.empty(count, dtype=object)
    for i, item in enumerate(items.flat):
        if isinstance(item, str):
            out[i] = item.encode("utf-8")
        elif isinstance(item, bytes):  # gRPC bytes_contents
            out[i] = item
        else:
            raise invalid_argument(f"input '{tensor}': data for datatype BYTES must be strings")
    return out.reshape(shape)


def _check_count(tensor: str, shape: tuple[int, ...], count: int, size: int) -> None:
    if size != count:
        raise invalid_argument(
            f"input '{tensor}': shape {shape_text(shape)} needs {count} elements "
            f"but data has {size}"
        )


def to_values(tensor: str, array: Array) -> Any:
    """An output's flat row-major values for JSON: a numpy array (orjson writes it natively)
    or, for BYTES, a list of str."""
    if array.dtype.name == "bfloat16":  # JSON numbers; float32 holds every bfloat16 exactly
        return np.ascontiguousarray(array, dtype=np.float32).ravel()
    if array.dtype.kind not in "OSU":
        return np.ascontiguousarray(array).ravel()
    out: list[str] = []
    for item in array.ravel():
        if isinstance(item, bytes):
            try:
                out.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                raise invalid_argument(
                    f"output '{tensor}' holds bytes that are not UTF-8 text; "
                    "request it with the binary_data parameter"
                ) from None
        else:
            out.append(str(item))
    return out
