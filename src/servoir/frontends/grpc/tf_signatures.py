"""Signatures as TensorFlow's SignatureDef protos, for GetModelMetadata.

The same content as the REST metadata document (frontends/rest/tf_status.py), as messages:
TensorInfo name/dtype/tensor_shape (-1 for a dim of unknown size, `unknown_rank` for an
unknown rank), the method name, and `defaults` as TensorProtos.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servoir.frontends.grpc.tf_tensors import encode_tensor
from servoir.protos.tensorflow_serving.apis import get_model_metadata_pb2
from servoir.types import Signature, TensorSpec

SIGNATURE_DEF_FIELD = "signature_def"


def signature_def_map(signatures: Mapping[str, Signature]) -> Any:
    """A tensorflow.serving.SignatureDefMap holding every signature."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in signatures.items():
        fill_signature_def(result.signature_def[key], signature)
    return result


def fill_signature_def(proto: Any, signature: Signature) -> None:
    """Write `signature` into an empty tensorflow.SignatureDef."""
    for alias, spec in signature.inputs.items():
        _fill_tensor_info(proto.inputs[alias], spec)
    for alias, spec in signature.outputs.items():
        _fill_tensor_info(proto.outputs[alias], spec)
    proto.method_name = signature.method_name
    for alias, value in signature.defaults.items():
        encode_tensor(alias, value, proto.defaults[alias])


def _fill_tensor_info(proto: Any, spec: TensorSpec) -> None:
    proto.name = spec.name
    proto.dtype = int(spec.dtype)
    if not spec.has_shape:
        return
    proto.tensor_shape.SetInParent()  # a scalar's empty shape is set too, as in TF
    if spec.shape is None:
        proto.tensor_shape.unknown_rank = True
        return
    dims = proto.tensor_shape.dim
    for size in spec.shape:
        dims.add().size = size
