"""Transport-free data types shared by every layer: dtypes, tensor specs, signatures, requests."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]


class DataType(enum.IntEnum):
    """TensorFlow's DataType numbers (tensorflow/core/framework/types.proto)."""

    DT_INVALID = 0
    DT_FLOAT = 1
    DT_DOUBLE = 2
    DT_INT32 = 3
    DT_UINT8 = 4
    DT_INT16 = 5
    DT_INT8 = 6
    DT_STRING = 7
    DT_COMPLEX64 = 8
    DT_INT64 = 9
    DT_BOOL = 10
    DT_BFLOAT16 = 14
    DT_UINT16 = 17
    DT_COMPLEX128 = 18
    DT_HALF = 19
    DT_UINT32 = 22
    DT_UINT64 = 23

    @property
    def short_name(self) -> str:
        """TensorFlow's DataTypeString: `float`, `int64`, `string`, ..."""
        return _SHORT_NAMES[self]

    def numpy(self) -> np.dtype[np.generic]:
        try:
            return _TO_NUMPY[self]
        except KeyError:
            raise ValueError(f"no numpy type for {self.name}") from None

    @staticmethod
    def from_numpy(dtype: np.dtype[np.generic]) -> DataType:
        if dtype.kind in ("S", "U", "O"):
            return DataType.DT_STRING
        try:
            return _FROM_NUMPY[np.dtype(dtype)]
        except KeyError:
            raise ValueError(f"unsupported numpy dtype {dtype}") from None


_SHORT_NAMES: dict[DataType, str] = {
    DataType.DT_INVALID: "INVALID",
    DataType.DT_FLOAT: "float",
    DataType.DT_DOUBLE: "double",
    DataType.DT_INT32: "int32",
    DataType.DT_UINT8: "uint8",
    DataType.DT_INT16: "int16",
    DataType.DT_INT8: "int8",
    DataType.DT_STRING: "string",
    DataType.DT_COMPLEX64: "complex64",
    DataType.DT_INT64: "int64",
    DataType.DT_BOOL: "bool",
    DataType.DT_BFLOAT16: "bfloat16",
    DataType.DT_UINT16: "uint16",
    DataType.DT_COMPLEX128: "complex128",
    DataType.DT_HALF: "half",
    DataType.DT_UINT32: "uint32",
    DataType.DT_UINT64: "uint64",
}

_TO_NUMPY: dict[DataType, np.dtype[np.generic]] = {
    DataType.DT_FLOAT: np.dtype(np.float32),
    DataType.DT_DOUBLE: np.dtype(np.float64),
    DataType.DT_INT32: np.dtype(np.int32),
    DataType.DT_UINT8: np.dtype(np.uint8),
    DataType.DT_INT16: np.dtype(np.int16),
    DataType.DT_INT8: np.dtype(np.int8),
    DataType.DT_STRING: np.dtype(object),
    DataType.DT_COMPLEX64: np.dtype(np.complex64),
    DataType.DT_INT64: np.dtype(np.int64),
    DataType.DT_BOOL: np.dtype(np.bool_),
    DataType.DT_UINT16: np.dtype(np.uint16),
    DataType.DT_COMPLEX128: np.dtype(np.complex128),
    DataType.DT_HALF: np.dtype(np.float16),
    DataType.DT_UINT32: np.dtype(np.uint32),
    DataType.DT_UINT64: np.dtype(np.uint64),
}

_FROM_NUMPY: dict[np.dtype[np.generic], DataType] = {
    v: k for k, v in _TO_NUMPY.items() if k is not DataType.DT_STRING
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One signature input or output.

    `name` is the runtime's tensor name (TensorInfo.name); the alias is the key it is stored
    under in `Signature.inputs`/`outputs`. `shape` is None for unknown rank, -1 for a dim of
    unknown size. `has_shape` is False when the signature gives no shape at all (a TF
    TensorInfo without `tensor_shape`, read as a scalar); metadata then shows none, as TF's.
    """

    name: str
    dtype: DataType
    shape: tuple[int, ...] | None
    has_shape: bool = True


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str = "tensorflow/serving/predict"
    # Inputs that may be left out of a request; the runtime supplies these values.
    defaults: Mapping[str, Array] = field(default_factory=dict)


DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Which servable a request wants: a version, a label, or (neither) the latest."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    def describe(self) -> str:
        """TensorFlow Serving's ServableRequest text, used in NOT_FOUND messages."""
        if self.version is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {self.version})"


# A REST body cannot be decoded before the signature is known (JSON carries no dtypes), so
# a request may carry a decoder that the service calls with the resolved signature.
InputDecoder = Callable[[Signature], dict[str, Array]]


@dataclass(slots=True)
class PredictRequest:
    model: ModelSpec
    inputs: Mapping[str, Array] | InputDecoder
    output_filter: tuple[str, ...] = ()
    # Absolute time.monotonic() deadline, or None for none.
    deadline: float | None = None
    # Which front end sent it, for metrics and logs: tf_rest, tf_grpc, v2_rest, v2_grpc.
    protocol: str = "internal"


@dataclass(frozen=True, slots=True)
class PredictResult:
    name: str
    version: int
    signature_name: str
    outputs: Mapping[str, Array]
    signature: Signature
