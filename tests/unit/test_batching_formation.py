"""Pure batch formation: sizes, splitting, bucketing, padding, merging and output splitting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from servoir.batching.formation import (
    NO_DIMENSIONS,
    ROWS_DIFFER,
    SHAPES_DIFFER,
    bucket_bound,
    bucket_key,
    join_pieces,
    merge,
    padded_size,
    sequence_length,
    split_outputs,
    split_sizes,
    task_size,
)
from servoir.errors import Code, ServingError


def rows(*values: float, width: int = 2) -> np.ndarray:
    return np.array([[v] * width for v in values], np.float32)


# ---- sizes ---------------------------------------------------------------------------


def test_task_size_is_the_shared_dim_0() -> None:
    assert task_size({"a": rows(1, 2, 3), "b": np.zeros(3, np.int64)}) == 3


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"a": np.float32(1)}, "Batching Run() input tensors must have at least one dimension"),
        (
            {"a": rows(1, 2), "b": rows(1)},
            "Batching Run() input tensors must have equal 0th-dimension size",
        ),
        ({}, "Batching Run() must have at least one input tensor"),
    ],
)
def test_task_size_errors(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(ServingError) as caught:
        task_size(inputs)
    assert (caught.value.code, caught.value.message) == (Code.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("size", "room", "limit", "pieces"),
    [
        (10, 3, 4, [3, 4, 3]),  # fill the open batch first, then whole batches
        (10, 0, 4, [4, 4, 2]),
        (8, 0, 4, [4, 4]),
        (2, 5, 4, [2]),
        (5, 5, 4, [5]),
        (1, 0, 1, [1]),
        (3, 0, 1, [1, 1, 1]),
    ],
)
def test_split_sizes(size: int, room: int, limit: int, pieces: list[int]) -> None:
    assert split_sizes(size, room, limit) == pieces
    assert sum(pieces) == size


@pytest.mark.parametrize(
    ("count", "allowed", "padded"),
    [
        (3, (), 3),
        (3, (2, 4, 8), 4),
        (4, (2, 4, 8), 4),
        (1, (2, 4, 8), 2),
        (9, (2, 4, 8), 9),  # larger than every allowed size: run unpadded
    ],
)
def test_padded_size(count: int, allowed: tuple[int, ...], padded: int) -> None:
    assert padded_size(count, allowed) == padded


# ---- bucketing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "bounds", "bucket"),
    [
        (10, (16, 32, 64), 16),
        (16, (16, 32, 64), 16),
        (17, (16, 32, 64), 32),
        (100, (16, 32, 64), 128),  # past the last bound: next power of two
        (1, (), 1),
        (5, (), 8),
        (64, (), 64),
        (65, (), 128),
        (0, (), 1),
    ],
)
def test_bucket_bound(length: int, bounds: tuple[int, ...], bucket: int) -> None:
    assert bucket_bound(length, bounds) == bucket


def test_sequence_length_is_the_longest_dim_1() -> None:
    inputs = {"ids": np.zeros((1, 37), np.int64), "flag": np.zeros(1), "img": np.zeros((1, 5, 9))}
    assert sequence_length(inputs) == 37
    assert sequence_length({"flag": np.zeros(3)}) == 0


def test_bucket_keys() -> None:
    short = {"ids": np.zeros((1, 12), np.int64)}
    also_short = {"ids": np.zeros((1, 15), np.int64)}
    long = {"ids": np.zeros((1, 40), np.int64)}
    assert bucket_key(short, None, pad=True) is None  # bucketing off: one batch for all
    assert bucket_key(short, (16, 64), pad=True) == bucket_key(also_short, (16, 64), pad=True)
    assert bucket_key(short, (16, 64), pad=True) != bucket_key(long, (16, 64), pad=True)
    # Without padding only equal shapes may share a batch, so the key is the exact shape.
    assert bucket_key(short, (), pad=False) != bucket_key(also_short, (), pad=False)
    assert bucket_key(short, (), pad=False) == bucket_key(dict(short), (), pad=False)


# ---- merging -------------------------------------------------------------------------


def test_merge_concatenates_in_order() -> None:
    merged = merge([{"x": rows(1)}, {"x": rows(2, 3)}], [1, 2], pad=False)
    np.testing.assert_array_equal(merged.inputs["x"], rows(1, 2, 3))
    assert merged.rows == 3 and merged.kept == [0, 1] and not merged.rejected


def test_a_lone_part_is_passed_through_without_a_copy() -> None:
    x = rows(1, 2)
    assert merge([{"x": x}], [2], pad=False).inputs["x"] is x


def test_batch_padding_repeats_row_0_of_the_last_part() -> None:
    merged = merge([{"x": rows(1)}, {"x": rows(5, 6)}], [1, 2], pad=False, allowed=(2, 4, 8))
    assert merged.rows == 4
    np.testing.assert_array_equal(merged.inputs["x"], rows(1, 5, 6, 5))


def test_different_shapes_without_padding_reject_only_the_odd_part() -> None:
    parts = [{"x": rows(1, width=2)}, {"x": rows(2, width=3)}, {"x": rows(3, width=2)}]
    merged = merge(parts, [1, 1, 1], pad=False)
    assert merged.kept == [0, 2]
    error = merged.rejected[1]
    assert error.code is Code.FAILED_PRECONDITION
    assert error.message == SHAPES_DIFFER.format(name="x")
    assert error.message.startswith(
        "Tensors with name 'x' from different tasks have different shapes and padding is "
        "turned off."
    )
    np.testing.assert_array_equal(merged.inputs["x"], rows(1, 3))


def test_variable_length_padding_pads_every_dim_after_0_with_zeros() -> None:
    a = {"ids": np.array([[1, 2]], np.int64), "mask": np.array([[True, True]])}
    b = {"ids": np.array([[3, 4, 5, 6]], np.int64), "mask": np.array([[True, True, True, True]])}
    merged = merge([a, b], [1, 1], pad=True)
    np.testing.assert_array_equal(merged.inputs["ids"], [[1, 2, 0, 0], [3, 4, 5, 6]])
    np.testing.assert_array_equal(merged.inputs["mask"], [[1, 1, 0, 0], [1, 1, 1, 1]])
    assert merged.inputs["mask"].dtype == np.bool_


def test_padding_several_dims_and_strings() -> None:
    a = {"img": np.ones((1, 1, 3), np.float32), "tag": np.array([[b"a"]], object)}
    b = {"img": np.ones((2, 2, 2), np.float32), "tag": np.array([[b"b", b"c"]] * 2, object)}
    merged = merge([a, b], [1, 2], pad=True)
    assert merged.inputs["img"].shape == (3, 2, 3)
    assert merged.inputs["img"][0].sum() == 3  # the padded cells of row 0 are zeros
    assert merged.inputs["tag"].tolist() == [[b"a", b""], [b"b", b"c"], [b"b", b"c"]]


def test_padding_rejects_a_part_of_another_rank() -> None:
    merged = merge([{"x": np.zeros((1, 2))}, {"x": np.zeros((1, 2, 2))}], [1, 1], pad=True)
    assert merged.kept == [0]
    assert "different ranks" in merged.rejected[1].message


# ---- splitting outputs ----------------------------------------------------------------


def test_split_outputs_back_per_part_and_drop_padding_rows() -> None:
    y = np.arange(8, dtype=np.float32).reshape(4, 2)
    pieces = split_outputs({"y": y, "n": np.arange(4)}, [1, 2], rows=4)
    assert [p["y"].tolist() for p in pieces] == [[[0, 1]], [[2, 3], [4, 5]]]
    assert [p["n"].tolist() for p in pieces] == [[0], [1, 2]]
    assert np.shares_memory(pieces[1]["y"], y)  # views, not copies


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"y": np.float32(3)}, NO_DIMENSIONS),
        ({"y": np.zeros((3, 2))}, ROWS_DIFFER),
        ({"y": np.zeros((4, 2)), "z": np.zeros(5)}, ROWS_DIFFER),
    ],
)
def test_output_errors_are_tf_servings(outputs: dict[str, Any], message: str) -> None:
    with pytest.raises(ServingError) as caught:
        split_outputs(outputs, [2, 2], rows=4)
    assert (caught.value.code, caught.value.message) == (Code.FAILED_PRECONDITION, message)
    assert message in (
        "Batched output tensor has 0 dimensions",
        "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
        "sizes of the input tensors",
    )


def test_pieces_of_a_split_request_are_joined_padded_to_the_longest() -> None:
    # The first piece ran in a batch padded to length 3, the others in batches of length 1.
    pieces = [
        {"y": np.array([[1, 2, 0]]), "s": np.array([b"a"], dtype=object)},
        {"y": np.array([[3], [4]]), "s": np.array([b"b", b"c"], dtype=object)},
        {"y": np.array([[5]]), "s": np.array([b"d"], dtype=object)},
    ]
    joined = join_pieces(pieces)
    assert joined["y"].tolist() == [[1, 2, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0]]
    assert joined["s"].tolist() == [b"a", b"b", b"c", b"d"]


def test_pieces_of_different_ranks_cannot_be_joined() -> None:
    with pytest.raises(ServingError) as info:
        join_pieces([{"y": np.zeros((1, 2))}, {"y": np.zeros((1, 2, 2))}])
    assert info.value.code is Code.FAILED_PRECONDITION
    assert "output 'y'" in info.value.message
