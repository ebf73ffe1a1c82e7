"""A SavedModel MetaGraphDef's SignatureDefs as Servoir signatures.

Every signature is kept, `__saved_model_init_op` included, because TF Serving's metadata lists
them all. Takes TensorFlow's own protos (tensorflow.core.protobuf.meta_graph_pb2) and imports
no TensorFlow itself: the caller passes the function that turns a default's TensorProto into
an array (tf.make_ndarray).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from servoir.types import Array, DataType, Signature, TensorSpec

# TensorFlow marks reference-typed tensors (TF1 variables and their assign ops) with
# DataType + 100 (DT_FLOAT_REF = 101); the value fed or fetched is of the base type.
_REF_OFFSET = 100

ToArray = Callable[[Any], Array]


def data_type(value: int) -> DataType:
    """A TensorInfo dtype; reference types become their base type, unknown ones DT_INVALID."""
    if value > _REF_OFFSET:
        value -= _REF_OFFSET
    try:
        return DataType(value)
    except ValueError:  # resource, variant, quantized: nothing a client can send or read
        return DataType.DT_INVALID


def tensor_spec(info: Any) -> TensorSpec:
    """One TensorInfo. Sparse and composite encodings have no tensor name: `name` is ""."""
    name = info.name if info.WhichOneof("encoding") == "name" else ""
    shape_proto = info.tensor_shape
    shape = None if shape_proto.unknown_rank else tuple(int(d.size) for d in shape_proto.dim)
    return TensorSpec(name, data_type(info.dtype), shape, info.HasField("tensor_shape"))


def signature(signature_def: Any, to_array: ToArray) -> Signature:
    return Signature(
        inputs={alias: tensor_spec(info) for alias, info in signature_def.inputs.items()},
        outputs={alias: tensor_spec(info) for alias, info in signature_def.outputs.items()},
        method_name=signature_def.method_name,
        defaults={alias: to_array(proto) for alias, proto in signature_def.defaults.items()},
    )


def signatures(meta_graph: Any, to_array: ToArray) -> dict[str, Signature]:
    defs: Mapping[str, Any] = meta_graph.signature_def
    return {key: signature(value, to_array) for key, value in defs.items()}
