"""Status and metadata documents in TensorFlow Serving's JSON (protobuf JsonPrinter) shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from servoir.core.manager import VersionStatus
from servoir.errors import Code
from servoir.frontends.grpc.tf_tensors import encode_tensor
from servoir.protos.tensorflow.core.framework import tensor_pb2
from servoir.service import ModelMetadata
from servoir.types import Array, Signature, TensorSpec


def status_entries(statuses: Sequence[VersionStatus]) -> list[dict[str, Any]]:
    return [
        {
            "version": str(s.version),
            "state": s.state.name,
            "status": {
                "error_code": s.error.code.name if s.error else Code.OK.name,
                "error_message": s.error.message if s.error else "",
            },
        }
        for s in statuses
    ]


def status_json(statuses: Sequence[VersionStatus]) -> bytes:
    doc = {"model_version_status": status_entries(statuses)}
    # JsonPrinter's add_whitespace layout, which Python's indent=1 reproduces exactly.
    return json.dumps(doc, indent=1).encode()


def _shape(shape: tuple[int, ...] | None) -> dict[str, Any]:
    if shape is None:
        return {"dim": [], "unknown_rank": True}
    return {"dim": [{"size": str(d), "name": ""} for d in shape], "unknown_rank": False}


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    if not spec.has_shape:  # JsonPrinter leaves out a message field that is not set
        return {"dtype": spec.dtype.name, "name": spec.name}
    return {"dtype": spec.dtype.name, "tensor_shape": _shape(spec.shape), "name": spec.name}


_TENSOR_FIELDS = [f.name for f in tensor_pb2.TensorProto.DESCRIPTOR.fields]


def tensor_proto_json(value: Array) -> dict[str, Any]:
    """A signature default as TF's metadata JsonPrinter writes it: the TensorProto that gRPC
    metadata carries, every field set or not (always_print_fields_with_no_presence), in
    declaration order."""
    proto = tensor_pb2.TensorProto()
    encode_tensor("default", np.asarray(value), proto)
    doc = json_format.MessageToDict(
        proto, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return {name: doc[name] for name in _TENSOR_FIELDS if name in doc}


def signature_json(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": {a: _tensor_info(s) for a, s in signature.inputs.items()},
        "outputs": {a: _tensor_info(s) for a, s in signature.outputs.items()},
        "method_name": signature.method_name,
        "defaults": {a: tensor_proto_json(v) for a, v in signature.defaults.items()},
    }


def signature_def_map_json(signatures: Mapping[str, Signature]) -> dict[str, Any]:
    return {"signature_def": {k: signature_json(s) for k, s in signatures.items()}}


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "model_spec": {"name": meta.name, "signature_name": "", "version": str(meta.version)},
        "metadata": {"signature_def": signature_def_map_json(meta.signatures)},
    }
