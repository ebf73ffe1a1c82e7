"""Batching parameters: TF Serving's text format, defaults, validation messages and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from servoir.batching.options import (
    BatchingOptions,
    config_from_flags,
    parse_length_buckets,
    parse_parameters,
    read_parameters,
)
from servoir.errors import Code, ServingError

# TF Serving's testdata/batching_config.txt
TF_EXAMPLE = """
max_batch_size { value: 128 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 8 }
"""


def test_defaults_are_tf_serving_shared_batch_scheduler_defaults() -> None:
    options = parse_parameters("", "empty")
    assert options == BatchingOptions()
    assert (options.max_batch_size, options.batch_timeout_micros) == (1000, 0)
    assert options.max_enqueued_batches == 10
    assert options.threads >= 1 and options.num_batch_threads == 0  # 0: one per core
    assert options.thread_pool_name == "model_server_batch_threads"
    assert options.batch_limit == 1000


def test_tf_serving_example_file() -> None:
    options = parse_parameters(TF_EXAMPLE, "batching_config.txt")
    assert options.max_batch_size == 128
    assert options.max_enqueued_batches == 1_000_000
    assert options.threads == 8


def test_every_field() -> None:
    options = parse_parameters(
        """
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 2500 }
        max_enqueued_batches { value: 3 }
        num_batch_threads { value: 2 }
        thread_pool_name { value: "pool" }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 64
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 16 }
        """,
        "f",
    )
    assert options == BatchingOptions(64, 2500, 3, 2, "pool", (8, 64), True, True, 16)
    assert options.timeout_s == pytest.approx(0.0025)
    assert options.batch_limit == 16  # with splitting, batches hold max_execution_batch_size


def test_execution_size_needs_splitting_and_defaults_to_max_batch_size() -> None:
    assert parse_parameters("max_execution_batch_size { value: 4 }", "f").batch_limit == 1000
    splitting = parse_parameters("enable_large_batch_splitting { value: true }", "f")
    assert splitting.batch_limit == 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8",
            "Last entry in allowed_batch_sizes must match max_batch_size; "
            "last entry was 8; expected 16",
        ),
        (
            "allowed_batch_sizes: 4 allowed_batch_sizes: 8",
            "Last entry in allowed_batch_sizes must match max_batch_size; "
            "last entry was 8; expected 1000",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 8 allowed_batch_sizes: 4 "
            "allowed_batch_sizes: 8",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        ("max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"),
        ("max_enqueued_batches { value: -1 }", "max_enqueued_batches must be positive; was -1"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
        (
            "batch_timeout_micros { value: -5 }",
            "batch_timeout_micros must be non-negative; was -5",
        ),
    ],
)
def test_validation_messages(text: str, message: str) -> None:
    with pytest.raises(ServingError) as caught:
        parse_parameters(text, "f")
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message == message


def test_a_parse_error_names_the_file_and_position() -> None:
    with pytest.raises(ServingError) as caught:
        parse_parameters("max_batch_size { value: 8 }\nmax_batch_siz { value: 3 }", "p.txt")
    assert caught.value.message.startswith("Invalid protobuf file: 'p.txt': 2:")
    assert "max_batch_siz" in caught.value.message


def test_read_parameters_shows_the_given_name_not_the_path(tmp_path: Path) -> None:
    path = tmp_path / "secret" / "batching_params.pbtxt"
    with pytest.raises(ServingError) as caught:
        read_parameters(path, shown_as="batching_params.pbtxt")
    assert str(tmp_path) not in caught.value.message
    path.parent.mkdir()
    path.write_text("max_batch_size { value: 7 }")
    assert read_parameters(path).max_batch_size == 7


def test_a_parameters_file_without_enable_batching_is_tf_servings_error(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as caught:
        config_from_flags(False, str(tmp_path / "b.txt"))
    assert caught.value.message == (
        "server_options.batching_parameters_file is set without setting "
        "server_options.enable_batching to true."
    )


def test_flags_to_config(tmp_path: Path) -> None:
    assert config_from_flags(False, "") is None
    assert config_from_flags(True, "") is not None
    file = tmp_path / "b.txt"
    file.write_text(TF_EXAMPLE)
    config = config_from_flags(True, str(file), True, False, "16,32")
    assert config is not None
    assert config.options.max_batch_size == 128 and config.threads == 8
    assert config.per_model and not config.dispatch_when_idle
    assert config.length_buckets == (16, 32) and not config.nearest_length
    nearest = config_from_flags(True, "", length_buckets="nearest")
    assert nearest is not None and nearest.nearest_length and nearest.length_buckets is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("  ", None), ("auto", ()), ("16,32,128", (16, 32, 128)), ("8", (8,))],
)
def test_length_buckets(text: str, expected: tuple[int, ...] | None) -> None:
    assert parse_length_buckets(text) == expected


@pytest.mark.parametrize("text", ["32,16", "0,8", "a,b", "16,16", ","])
def test_bad_length_buckets(text: str) -> None:
    with pytest.raises(ServingError, match="--batching_length_buckets"):
        parse_length_buckets(text)
