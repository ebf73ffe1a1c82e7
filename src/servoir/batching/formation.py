"""Pure batch formation: task sizes, splitting, bucketing, padding, merging and splitting
outputs back. No clocks, no queues, no event loop: arrays and numbers in, arrays out.

The rules and messages are TensorFlow Serving's (batching_session.cc, batching_util.cc,
input_split_metadata.cc) unless a comment says why Servoir differs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from servoir.errors import Code, ServingError
from servoir.types import Array

SHAPES_DIFFER = (
    "Tensors with name '{name}' from different tasks have different shapes and padding is "
    "turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with the "
    "same name have equal dimensions starting with the first dim."
)
NO_DIMENSIONS = "Batched output tensor has 0 dimensions"
ROWS_DIFFER = (
    "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
    "of the input tensors"
)


def task_size(inputs: Mapping[str, Array]) -> int:
    """A request's rows: the dim 0 every input shares (TF's ComputeTensorBatchSize)."""
    size: int | None = None
    for array in inputs.values():
        if array.ndim == 0:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "Batching Run() input tensors must have at least one dimension",
            )
        if size is None:
            size = int(array.shape[0])
        elif array.shape[0] != size:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "Batching Run() input tensors must have equal 0th-dimension size",
            )
    if size is None:
        raise ServingError(
            Code.INVALID_ARGUMENT, "Batching Run() must have at least one input tensor"
        )
    return size


def split_sizes(size: int, room: int, limit: int) -> list[int]:
    """How a request of `size` rows is cut when it does not fit the open batch: first what
    fills the open batch's `room`, then pieces of `limit` rows, then the rest."""
    pieces = []
    if room > 0:
        first = min(size, room)
        pieces.append(first)
        size -= first
    while size > 0:
        piece = min(size, limit)
        pieces.append(piece)
        size -= piece
    return pieces


def padded_size(rows: int, allowed: Sequence[int]) -> int:
    """The smallest allowed batch size holding `rows` (rows itself when none is allowed,
    or none is large enough: TF logs and runs the batch unpadded then)."""
    for size in allowed:
        if size >= rows:
            return size
    return rows


def sequence_length(inputs: Mapping[str, Array]) -> int:
    """What bucketing groups by: the longest dim 1 among the inputs of rank 2 or more."""
    return max((int(a.shape[1]) for a in inputs.values() if a.ndim >= 2), default=0)


def bucket_bound(length: int, bounds: Sequence[int]) -> int:
    """The bucket a length falls in: the first bound >= length; past the last bound (or
    with no bounds) the next power of two, so even outliers share with their peers."""
    for bound in bounds:
        if length <= bound:
            return bound
    return 1 << max(length - 1, 0).bit_length()


def bucket_key(inputs: Mapping[str, Array], bounds: Sequence[int] | None, pad: bool) -> Hashable:
    """Which open batch a request may join. None: one batch for all (TF). With bucketing
    and padding, the length bucket; with bucketing and no padding, the exact trailing
    shapes, so that requests which cannot share a batch never meet."""
    if bounds is None:
        return None
    if pad:
        return bucket_bound(sequence_length(inputs), bounds)
    return trailing_shapes(inputs)


def trailing_shapes(inputs: Mapping[str, Array]) -> Hashable:
    """What must match for requests to share a batch without padding: every input's shape
    after dim 0."""
    return tuple(sorted((name, a.shape[1:]) for name, a in inputs.items()))


@dataclass(frozen=True, slots=True)
class Merged:
    inputs: dict[str, Array]
    kept: list[int]  # indices of the parts merged, in order
    rows: int  # rows after padding the batch up to an allowed size
    rejected: dict[int, ServingError] = field(default_factory=dict)


def merge(
    parts: Sequence[Mapping[str, Array]],
    sizes: Sequence[int],
    *,
    pad: bool,
    allowed: Sequence[int] = (),
) -> Merged:
    """Concatenate the parts along dim 0 into one batch.

    Parts that cannot share the batch with the first one are left out with their error
    (TF fails the whole batch; one odd request should not fail its neighbours). With `pad`,
    every dim after 0 is padded with zeros to the batch's largest; TF pads with each
    tensor's first element, but zero is the padding token and the "masked" value of
    transformer inputs, so real positions compute exactly as unpadded. Batch padding up to
    an allowed size repeats row 0 of the last part, as TF does; those rows are dropped
    from the outputs.
    """
    kept, rejected = _compatible(parts, pad)
    total = sum(sizes[i] for i in kept)
    rows = padded_size(total, allowed)
    merged: dict[str, Array] = {}
    for name in parts[kept[0]]:
        arrays = [parts[i][name] for i in kept]
        if pad:
            trailing = tuple(max(dims) for dims in zip(*(a.shape[1:] for a in arrays), strict=True))
            arrays = [_pad(a, trailing) for a in arrays]
        if rows > total:
            arrays.append(np.repeat(arrays[-1][:1], rows - total, axis=0))
        merged[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return Merged(merged, kept, rows, rejected)


def _compatible(
    parts: Sequence[Mapping[str, Array]], pad: bool
) -> tuple[list[int], dict[int, ServingError]]:
    reference = parts[0]
    kept, rejected = [0], {}
    for index in range(1, len(parts)):
        error = _conflict(reference, parts[index], pad)
        if error is None:
            kept.append(index)
        else:
            rejected[index] = error
    return kept, rejected


def _conflict(
    reference: Mapping[str, Array], part: Mapping[str, Array], pad: bool
) -> ServingError | None:
    for name, array in part.items():
        want = reference[name]
        if pad and array.ndim != want.ndim:
            return ServingError(
                Code.FAILED_PRECONDITION,
                f"Tensors with name '{name}' from different tasks have different ranks "
                f"({want.ndim} and {array.ndim}) and cannot be padded to one shape.",
            )
        if not pad and array.shape[1:] != want.shape[1:]:
            return ServingError(Code.FAILED_PRECONDITION, SHAPES_DIFFER.format(name=name))
    return None


def _pad(array: Array, trailing: tuple[int, ...]) -> Array:
    if array.shape[1:] == trailing:
        return array
    shape = (array.shape[0], *trailing)
    if array.dtype == object:  # string tensors: pad with empty strings, not integer 0
        out: Array = np.full(shape, b"", dtype=object)
    else:
        out = np.zeros(shape, dtype=array.dtype)
    out[tuple(slice(0, d) for d in array.shape)] = array
    return out


def join_pieces(pieces: Sequence[Mapping[str, Array]]) -> dict[str, Array]:
    """The outputs of a request that was split, its pieces' outputs concatenated in order.
    With padding, pieces that ran in different batches may come back padded to different
    lengths: each is padded with zeros to the longest, as one batch would have been."""
    joined: dict[str, Array] = {}
    for name in pieces[0]:
        arrays = [piece[name] for piece in pieces]
        if len({a.ndim for a in arrays}) > 1:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"output '{name}' has different ranks in the pieces of a split request",
            )
        trailing = tuple(max(dims) for dims in zip(*(a.shape[1:] for a in arrays), strict=True))
        joined[name] = np.concatenate([_pad(a, trailing) for a in arrays])
    return joined


def split_outputs(
    outputs: Mapping[str, Array], sizes: Sequence[int], rows: int
) -> list[dict[str, Array]]:
    """Cut each batched output back into one dict per part (views, no copies); padding
    rows past sum(sizes) are dropped. Raises FAILED_PRECONDITION as TF does when an output
    has no batch dimension or the wrong number of rows."""
    for value in outputs.values():
        if value.ndim == 0:
            raise ServingError(Code.FAILED_PRECONDITION, NO_DIMENSIONS)
        if value.shape[0] != rows:
            raise ServingError(Code.FAILED_PRECONDITION, ROWS_DIFFER)
    result: list[dict[str, Array]] = []
    start = 0
    for size in sizes:
        stop = start + size
        result.append({name: value[start:stop] for name, value in outputs.items()})
        start = stop
    return result
