"""V2 datatype names (`FP32`, `BYTES`, ...) <-> servoir's DataType and numpy, and platform names.

Every numpy dtype here is explicitly little-endian: the V2 raw layout is little-endian whatever
the machine, and `np.frombuffer` with these dtypes reads it without a byte swap on x86/ARM.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from servoir.errors import invalid_argument
from servoir.types import DataType

_V2_TO_DT = MappingProxyType(
    {
        "BOOL": DataType.DT_BOOL,
        "UINT8": DataType.DT_UINT8,
        "UINT16": DataType.DT_UINT16,
        "UINT32": DataType.DT_UINT32,
        "UINT64": DataType.DT_UINT64,
        "INT8": DataType.DT_INT8,
        "INT16": DataType.DT_INT16,
        "INT32": DataType.DT_INT32,
        "INT64": DataType.DT_INT64,
        "FP16": DataType.DT_HALF,
        "FP32": DataType.DT_FLOAT,
        "FP64": DataType.DT_DOUBLE,
        "BYTES": DataType.DT_STRING,
        # Triton's addition; listed so metadata can name it, but no numpy type carries it.
        "BF16": DataType.DT_BFLOAT16,
    }
)
_DT_TO_V2 = MappingProxyType({dt: name for name, dt in _V2_TO_DT.items()})

_NUMPY = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype("u1"),
        "UINT16": np.dtype("<u2"),
        "UINT32": np.dtype("<u4"),
        "UINT64": np.dtype("<u8"),
        "INT8": np.dtype("i1"),
        "INT16": np.dtype("<i2"),
        "INT32": np.dtype("<i4"),
        "INT64": np.dtype("<i8"),
        "FP16": np.dtype("<f2"),
        "FP32": np.dtype("<f4"),
        "FP64": np.dtype("<f8"),
        "BYTES": np.dtype(object),
    }
)

# Servoir's runtime platform -> Triton's platform name, so tools that branch on it recognise
# the model; platforms without a Triton counterpart are shown under their own name.
_PLATFORMS = MappingProxyType(
    {
        "onnx": "onnxruntime_onnx",
        "tensorflow": "tensorflow_savedmodel",
        "pytorch": "pytorch_libtorch",
        "python": "python",
    }
)

DATATYPES: tuple[str, ...] = tuple(_V2_TO_DT)


def v2_name(dtype: DataType) -> str:
    """The V2 name of a signature dtype; types V2 cannot express keep TensorFlow's name."""
    return _DT_TO_V2.get(dtype, dtype.name.removeprefix("DT_"))


def v2_name_of_array(dtype: np.dtype[np.generic]) -> str:
    """The V2 name of an output array's dtype (object and str arrays are BYTES)."""
    if dtype.name == "bfloat16":  # ml_dtypes' type, as TensorFlow returns it
        return "BF16"
    try:
        return v2_name(DataType.from_numpy(dtype))
    except ValueError:
        return str(dtype).upper()


def check_datatype(tensor: str, datatype: object) -> str:
    """`datatype` when it is a V2 datatype this server can decode; else a 400 naming the tensor."""
    if datatype in _NUMPY:
        return str(datatype)
    if datatype == "BF16":
        raise invalid_argument(f"input '{tensor}': datatype BF16 is not supported")
    shown = datatype if isinstance(datatype, str) else repr(datatype)
    raise invalid_argument(
        f"input '{tensor}': unknown datatype {shown} (expected one of {', '.join(_NUMPY)})"
    )


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype for a datatype already accepted by `check_datatype`."""
    return _NUMPY[datatype]


def platform_name(platform: str) -> str:
    return _PLATFORMS.get(platform, platform)
