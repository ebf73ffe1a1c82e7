"""signature.json parsing and the check of model outputs against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servoir.runtimes.signature_file import (
    SignatureFileError,
    declared_output,
    parse_signature,
    read_signature_file,
)
from servoir.types import PREDICT_METHOD, DataType, TensorSpec

GOOD = {
    "inputs": [
        {"name": "x", "dtype": "DT_FLOAT", "shape": [-1, 3]},
        {"name": "ids", "dtype": "int64", "shape": [-1, -1]},
    ],
    "outputs": [
        {"name": "y", "dtype": "float32"},
        {"name": "tag", "dtype": "string", "shape": None},
    ],
}


def test_parses_names_dtypes_and_shapes_in_order() -> None:
    sig = parse_signature(GOOD)
    assert list(sig.inputs) == ["x", "ids"]
    assert sig.inputs["x"] == TensorSpec("x", DataType.DT_FLOAT, (-1, 3))
    assert sig.inputs["ids"] == TensorSpec("ids", DataType.DT_INT64, (-1, -1))
    assert sig.outputs["y"] == TensorSpec("y", DataType.DT_FLOAT, None)
    assert sig.outputs["tag"].dtype is DataType.DT_STRING
    assert sig.method_name == PREDICT_METHOD


def test_method_name_is_kept() -> None:
    doc = {**GOOD, "method_name": "tensorflow/serving/regress"}
    assert parse_signature(doc).method_name == "tensorflow/serving/regress"


@pytest.mark.parametrize(
    ("text", "dtype"),
    [("DT_DOUBLE", DataType.DT_DOUBLE), ("dt_bool", DataType.DT_BOOL), ("half", DataType.DT_HALF)],
)
def test_dtype_spellings(text: str, dtype: DataType) -> None:
    doc = {"inputs": [{"name": "a", "dtype": text}], "outputs": [{"name": "b", "dtype": "float"}]}
    assert parse_signature(doc).inputs["a"].dtype is dtype


def _with_input(entry: Any) -> dict[str, Any]:
    return {"inputs": [entry], "outputs": [{"name": "y", "dtype": "float"}]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "expected an object with inputs and outputs"),
        ({"outputs": GOOD["outputs"]}, "inputs must be a non-empty list"),
        ({"inputs": [], "outputs": GOOD["outputs"]}, "inputs must be a non-empty list"),
        ({**GOOD, "input": []}, "unknown key(s) 'input'"),
        ({**GOOD, "method_name": 3}, "method_name must be a non-empty string"),
        (_with_input("x"), "inputs[0] must be an object"),
        (_with_input({"dtype": "float"}), "inputs[0]: name must be a non-empty string"),
        (_with_input({"name": "x"}), "inputs[0] (x): dtype is missing"),
        (_with_input({"name": "x", "dtype": "floaty"}), "dtype 'floaty' is not a known type"),
        (_with_input({"name": "x", "dtype": "DT_INVALID"}), "is not a known type"),
        (_with_input({"name": "x", "dtype": "float", "shape": [2, -2]}), "shape must be a list"),
        (_with_input({"name": "x", "dtype": "float", "shape": [True]}), "shape must be a list"),
        (_with_input({"name": "x", "dtype": "float", "shape": "2"}), "shape must be a list"),
        (_with_input({"name": "x", "dtype": "float", "shpae": [1]}), "unknown key(s) 'shpae'"),
        (
            {"inputs": [{"name": "x", "dtype": "float"}] * 2, "outputs": GOOD["outputs"]},
            "inputs names 'x' twice",
        ),
    ],
)
def test_problems_are_named(doc: Any, message: str) -> None:
    with pytest.raises(SignatureFileError) as info:
        parse_signature(doc)
    assert message in str(info.value)
    assert str(info.value).startswith("signature.json")


def test_file_errors_name_the_file_not_the_directory(tmp_path: Path) -> None:
    with pytest.raises(SignatureFileError, match=r"signature\.json not found") as info:
        read_signature_file(tmp_path / "signature.json")
    assert str(tmp_path) not in str(info.value)
    (tmp_path / "signature.json").write_text('{"inputs": [}')
    with pytest.raises(SignatureFileError, match=r"not valid JSON: .*line 1, column 13"):
        read_signature_file(tmp_path / "signature.json")
    (tmp_path / "signature.json").write_text(json.dumps(GOOD))
    assert list(read_signature_file(tmp_path / "signature.json").outputs) == ["y", "tag"]


def test_outputs_are_cast_within_a_kind_only() -> None:
    spec = TensorSpec("y", DataType.DT_FLOAT, (-1, 2))
    got = declared_output("y", [[1.0, 2.0]], spec)  # Python floats are float64
    assert got.dtype == np.float32 and got.shape == (1, 2)
    with pytest.raises(ValueError, match="'y' has shape \\[3\\] but the signature declares"):
        declared_output("y", np.zeros(3, np.float32), spec)
    ints = TensorSpec("n", DataType.DT_INT64, None)
    with pytest.raises(ValueError, match="'n' is float64 but the signature declares int64"):
        declared_output("n", np.zeros(2), ints)


def test_string_outputs_become_bytes() -> None:
    spec = TensorSpec("s", DataType.DT_STRING, (-1,))
    got = declared_output("s", ["é", b"raw"], spec)
    assert got.dtype == object and got.tolist() == ["é".encode(), b"raw"]
    with pytest.raises(ValueError, match="holds a int"):
        declared_output("s", [1], spec)


def test_integer_outputs_narrow_only_when_every_value_fits() -> None:
    small = TensorSpec("b", DataType.DT_INT8, (-1,))
    assert declared_output("b", np.array([-128, 127]), small).tolist() == [-128, 127]
    with pytest.raises(ValueError) as info:
        declared_output("b", np.array([1000, 2000, 300000]), small)  # would wrap to -24 ...
    assert str(info.value) == (
        "output 'b' holds values out of the range of the declared int8 (1000 to 300000)"
    )
    unsigned = TensorSpec("u", DataType.DT_UINT8, (-1,))
    with pytest.raises(ValueError, match="out of the range"):
        declared_output("u", np.array([300], np.uint16), unsigned)


def test_string_outputs_are_checked_against_the_declared_shape() -> None:
    spec = TensorSpec("s", DataType.DT_STRING, (-1,))
    with pytest.raises(ValueError, match="'s' has shape \\[2, 2\\] but the signature declares"):
        declared_output("s", [["a", "b"], ["c", "d"]], spec)
