"""The TensorFlow runtime's settings: TF Serving's flags, the session config, a missing
tensorflow package, and TensorInfo dtypes."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from servoir.cli import UsageError, config_from_flags
from servoir.config.tensorflow_flags import saved_model_tags, session_threads
from servoir.errors import Code, ServingError
from servoir.protos.tensorflow.core.protobuf import config_pb2
from servoir.runtimes.registry import RuntimeContext, RuntimeOptions, detect_platform
from servoir.runtimes.tensorflow import make_loader
from servoir.runtimes.tf_meta_graph import data_type
from servoir.types import DataType
from tests.conftest import SHARED_TESTDATA

HALF_PLUS_TWO = SHARED_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.mark.parametrize(
    ("session", "intra", "inter", "expected"),
    [
        (0, 0, 0, (0, 0)),  # TensorFlow's defaults
        (4, 0, 0, (4, 4)),  # the session value sizes both pools
        (4, 2, 0, (2, 0)),  # either specific flag wins over it
        (0, 2, 3, (2, 3)),
    ],
)
def test_session_threads(session: int, intra: int, inter: int, expected: tuple[int, int]) -> None:
    assert session_threads(session, intra, inter) == expected


def test_setting_all_three_thread_flags_is_a_usage_error(tmp_path: Path) -> None:
    flags = [
        f"--model_base_path={tmp_path}",
        "--tensorflow_session_parallelism=2",
        "--tensorflow_intra_op_parallelism=2",
        "--tensorflow_inter_op_parallelism=2",
    ]
    with pytest.raises(UsageError, match="You cannot configure all"):
        config_from_flags(flags)


def test_unimplemented_tf_serving_flags_are_named_and_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_from_flags(
        [f"--model_base_path={tmp_path}", "--enable_profiler=false", "--no_such_flag=1"]
    )
    assert capsys.readouterr().err.splitlines() == [
        "unsupported TensorFlow Serving flag, ignored: --enable_profiler=false "
        "(no profiler service)",
        "unknown argument: --no_such_flag=1",  # TF Serving's own text
    ]


@pytest.mark.parametrize(
    ("text", "tags"),
    [("serve", ("serve",)), ("serve,gpu", ("serve", "gpu")), (" serve , tpu ,", ("serve", "tpu")),
     ("", ("serve",))],
)  # fmt: skip
def test_saved_model_tags(text: str, tags: tuple[str, ...]) -> None:
    assert saved_model_tags(text) == tags


def test_flags_reach_the_server_config(tmp_path: Path) -> None:
    config = config_from_flags(
        [
            f"--model_base_path={tmp_path}",
            "--saved_model_tags=serve,gpu",
            "--tensorflow_session_parallelism=3",
            "--enable_signature_method_name_check",
        ]
    )
    runtime = config.runtime
    assert runtime.saved_model_tags == ("serve", "gpu")
    assert (runtime.tensorflow_intra_op_threads, runtime.tensorflow_inter_op_threads) == (3, 3)
    assert config.enable_signature_method_name_check
    assert not config_from_flags(
        [f"--model_base_path={tmp_path}"]
    ).enable_signature_method_name_check


def test_a_savedmodel_directory_is_detected(tmp_path: Path) -> None:
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        version = tmp_path / name
        version.mkdir()
        (version / name).write_bytes(b"")
        assert detect_platform(version) == "tensorflow"


def test_without_tensorflow_the_load_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with ThreadPoolExecutor(1) as executor:
        loader = make_loader("m", 1, HALF_PLUS_TWO, RuntimeContext(executor))
        with pytest.raises(ServingError) as info:
            loader.load()
    assert info.value.code is Code.FAILED_PRECONDITION
    assert "pip install servoir[tensorflow]" in info.value.message


@pytest.mark.skipif(not HALF_PLUS_TWO.is_dir(), reason=f"no test SavedModel at {HALF_PLUS_TWO}")
def test_thread_settings_go_into_the_session_config() -> None:
    options = RuntimeOptions(tensorflow_intra_op_threads=1, tensorflow_inter_op_threads=2)
    with ThreadPoolExecutor(1) as executor:
        servable = make_loader("m", 1, HALF_PLUS_TWO, RuntimeContext(executor, options)).load()
    try:
        config = servable._session._config  # type: ignore[attr-defined]
        assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (1, 2)
    finally:
        servable.close()


@pytest.mark.skipif(not HALF_PLUS_TWO.is_dir(), reason=f"no test SavedModel at {HALF_PLUS_TWO}")
def test_a_session_config_reaches_the_session_whole() -> None:
    # --tensorflow_session_config_file / a platform config's session_config: every field
    # goes to TensorFlow; thread counts it leaves at 0 take the runtime's (batching's share).
    session_config = config_pb2.ConfigProto(intra_op_parallelism_threads=3)
    session_config.gpu_options.allow_growth = True
    session_config.graph_options.rewrite_options.constant_folding = 2  # OFF
    options = RuntimeOptions(
        tensorflow_inter_op_threads=2,
        tensorflow_session_config=session_config.SerializeToString(),
    )
    with ThreadPoolExecutor(1) as executor:
        servable = make_loader("m", 1, HALF_PLUS_TWO, RuntimeContext(executor, options)).load()
    try:
        config = servable._session._config  # type: ignore[attr-defined]
        assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (3, 2)
        assert config.gpu_options.allow_growth
        assert config.graph_options.rewrite_options.constant_folding == 2
    finally:
        servable.close()


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(1, DataType.DT_FLOAT), (7, DataType.DT_STRING), (101, DataType.DT_FLOAT),
     (109, DataType.DT_INT64), (20, DataType.DT_INVALID), (0, DataType.DT_INVALID)],
)  # fmt: skip
def test_tensor_info_dtypes(value: int, dtype: DataType) -> None:
    # *_REF types (TF1 variables) are their base type; resource handles cannot be served.
    assert data_type(value) is dtype


def test_a_directory_without_a_savedmodel_file(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()  # as tf_text_regression: everything but saved_model.pb
    with ThreadPoolExecutor(1) as executor:
        loader = make_loader("m", 7, tmp_path, RuntimeContext(executor))
        with pytest.raises(ServingError) as info:
            loader.load()
    assert info.value.code is Code.NOT_FOUND
    assert info.value.message == (
        "Failed to load version 7 of model m: SavedModel file does not exist "
        "(saved_model.pb or .pbtxt)"
    )


def test_a_corrupt_savedmodel_error_shows_no_path(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\xff not a protobuf")
    with ThreadPoolExecutor(1) as executor:
        loader = make_loader("m", 3, tmp_path, RuntimeContext(executor))
        with pytest.raises(ServingError) as info:
            loader.load()
    message = info.value.message
    assert info.value.code is Code.INVALID_ARGUMENT
    assert message.startswith("Failed to load version 3 of model m: ")
    assert str(tmp_path) not in message and "/tmp" not in message, message
