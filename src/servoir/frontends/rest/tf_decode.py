"""TF Serving predict request JSON -> numpy inputs (contract 1.2, 1.3).

`read_predict_body` reads the signature name, all that is checked before the model is looked
up (TF Serving's order: parse, signature name, model and signature, then the payload keys).
`decode_inputs` checks the payload keys and turns the row ("instances") or columnar
("inputs") payload into one array per signature input. Each input first tries numpy's
one-call fast path; whatever that refuses is decoded again by the exact walker, which raises
TF Serving's messages in TF Serving's order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servoir.errors import ServingError, invalid_argument
from servoir.frontends.rest.json_body import may_hold_bools
from servoir.frontends.rest.json_text import debug_text
from servoir.frontends.rest.tf_values import (
    build_tensor,
    dense_shape,
    exact_tensor,
    fast_tensor,
    fill_values,
    is_b64_object,
)
from servoir.types import Array, DataType, Signature, TensorSpec

_SIGNATURE_KEY = "signature_name"
_INSTANCES_KEY = "instances"
_INPUTS_KEY = "inputs"


@dataclass(frozen=True)
class PredictBody:
    signature_name: str
    doc: dict[str, Any]

    @property
    def row_format(self) -> bool:
        return _INSTANCES_KEY in self.doc


def read_predict_body(doc: dict[str, Any]) -> PredictBody:
    """The signature name: all TF Serving checks before it looks the model up."""
    signature_name = doc.get(_SIGNATURE_KEY, "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            f"JSON Value: {debug_text(doc)} not formatted correctly."
            " 'signature_name' key must be a string value."
        )
    return PredictBody(signature_name, doc)


def predict_payload(doc: dict[str, Any]) -> tuple[bool, Any]:
    """(row format?, the one payload); other keys are ignored. TF Serving checks these keys
    only once the signature is found."""
    if _INSTANCES_KEY in doc and _INPUTS_KEY in doc:
        raise invalid_argument(
            f"JSON Value: {debug_text(doc)} Not formatted correctly expecting only one of"
            " 'inputs' or 'instances' keys to exist "
        )
    if _INSTANCES_KEY in doc:
        instances = doc[_INSTANCES_KEY]
        if not isinstance(instances, list):
            # TF Serving's source spells this "Excepting"; the contract reads "Expecting".
            raise invalid_argument(
                f"JSON Value: {debug_text(doc)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise invalid_argument(f"JSON Value: {debug_text(doc)} No values in 'instances' array")
        return True, instances
    if _INPUTS_KEY in doc:
        return False, doc[_INPUTS_KEY]
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def decode_inputs(
    body: PredictBody, signature: Signature, *, raw_body: bytes | None = None
) -> dict[str, Array]:
    """One array per signature input, dtypes from the signature; shapes are not checked.

    Pass the request bytes as `raw_body`: numpy reads true/false among numbers as 1/0, so
    when the body holds either word, numeric inputs skip the fast path. Without it, such a
    mixed list would be accepted.
    """
    inputs = signature.inputs
    if not inputs:
        name = body.signature_name or "DEFAULT"
        raise invalid_argument(f"Failed to get input map for signature: {name}")
    row_format, payload = predict_payload(body.doc)
    numbers_only = raw_body is None or not may_hold_bools(raw_body)
    if row_format:
        return _decode_rows(payload, inputs, numbers_only)
    return _decode_columns(payload, inputs, numbers_only)


def _tensor(value: Any, dtype: DataType, numbers_only: bool) -> Array:
    fast = fast_tensor(value, dtype, numbers_only)
    return fast if fast is not None else exact_tensor(value, dtype)


# ------------------------------------------------------------------ columnar ("inputs")


def _decode_columns(
    payload: Any, inputs: Mapping[str, TensorSpec], numbers_only: bool
) -> dict[str, Array]:
    if not isinstance(payload, dict) or is_b64_object(payload):
        if len(inputs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input"
                " tensors required as per tensorinfo_map"
            )
        ((name, spec),) = inputs.items()
        return {name: _tensor(payload, spec.dtype, numbers_only)}
    # Extra keys are ignored, as in TF Serving.
    result: dict[str, Array] = {}
    for name in sorted(inputs):
        if name not in payload:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        result[name] = _tensor(payload[name], inputs[name].dtype, numbers_only)
    return result


# ---------------------------------------------------------------------- row ("instances")


def _decode_rows(
    instances: list[Any], inputs: Mapping[str, TensorSpec], numbers_only: bool
) -> dict[str, Array]:
    if not isinstance(instances[0], dict) and len(inputs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input"
            " tensors required as per tensorinfo_map"
        )
    if _is_element_object(instances[0]):
        fast = _fast_named_rows(instances, inputs, numbers_only)
        return fast if fast is not None else _exact_named_rows(instances, inputs)
    # One input (or a b64 object first, which TF also reads as a value). An object further
    # on makes numpy's array an object array, which the fast path refuses.
    name = sorted(inputs)[0]
    dtype = inputs[name].dtype
    stacked = fast_tensor(instances, dtype, numbers_only)
    return {name: stacked} if stacked is not None else _exact_plain_rows(instances, name, dtype)


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _fast_named_rows(
    instances: list[Any], inputs: Mapping[str, TensorSpec], numbers_only: bool
) -> dict[str, Array] | None:
    """Each input's column stacked by numpy, when every instance has exactly the input keys."""
    names = inputs.keys()
    for elem in instances:
        if not _is_element_object(elem) or elem.keys() != names:
            return None
    result: dict[str, Array] = {}
    for name in sorted(names):
        column = [elem[name] for elem in instances]
        arr = fast_tensor(column, inputs[name].dtype, numbers_only)
        if arr is None:
            return None
        result[name] = arr
    return result


class _Stacker:
    """One input's instances, checked for equal size and shape (TF's AddInstanceItem)."""

    def __init__(self, dtype: DataType) -> None:
        self.dtype = dtype
        self.shape: list[int] | None = None
        self.values: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        shape = dense_shape(item)
        values = fill_values(item, shape, self.dtype)
        if self.shape is None:
            self.shape = shape
        elif _size(self.shape) != len(values):
            raise invalid_argument(
                f"Expecting tensor size: {_size(self.shape)} but got: {len(values)}"
            )
        elif self.shape != shape:
            raise invalid_argument(
                f"Expecting shape {_shape_text(self.shape)} but got: {_shape_text(shape)}"
            )
        self.values.extend(values)
        self.count += 1

    def tensor(self, source: Any) -> Array:
        shape = [self.count, *(self.shape or [])]
        return build_tensor(self.values, shape, self.dtype, source)


def _exact_named_rows(instances: list[Any], inputs: Mapping[str, TensorSpec]) -> dict[str, Array]:
    names = set(inputs)
    stackers: dict[str, _Stacker] = {}
    for index, elem in enumerate(instances):
        if not _is_element_object(elem):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        for key, item in elem.items():
            try:
                if key not in names:
                    raise invalid_argument(f"JSON object: does not have named input: {key}")
                stackers.setdefault(key, _Stacker(inputs[key].dtype)).add(item)
            except ServingError as e:
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of 'instances' list."
                    f" Error: {_status_text(e)}"
                ) from None
        if elem.keys() != names:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object:"
                f" {debug_text(elem)} keys must be equal to: {','.join(sorted(names))}"
            )
    return {name: stackers[name].tensor(instances) for name in sorted(stackers)}


def _exact_plain_rows(instances: list[Any], name: str, dtype: DataType) -> dict[str, Array]:
    stacker = _Stacker(dtype)
    for index, elem in enumerate(instances):
        if _is_element_object(elem):
            raise invalid_argument(
                f"Expecting value/list but got object at item {index} of input list"
            )
        try:
            stacker.add(elem)
        except ServingError as e:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. Error: {_status_text(e)}"
            ) from None
    return {name: stacker.tensor(instances)}


def _status_text(error: ServingError) -> str:
    """absl::Status::ToString(), which TF Serving embeds in row-format messages."""
    return f"{error.code.name}: {error.message}"


def _size(shape: list[int]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
