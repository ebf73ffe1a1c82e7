"""--platform_config_file (text PlatformConfigMap) and --tensorflow_session_config_file:
parsing, TF Serving's file layout, the errors, and what reaches the server's config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from servoir.batching.options import BatchingOptions
from servoir.cli import UsageError, config_from_flags
from servoir.config.platform_config import (
    PlatformSettings,
    parse_platform_config,
    session_config,
)
from servoir.errors import ServingError
from servoir.protos.tensorflow.core.protobuf import config_pb2
from servoir.warmup import WarmupOptions

ADAPTER = "type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig"


def entry(platform: str, legacy_config: str, adapter: str = ADAPTER) -> str:
    """One platform_configs entry, laid out as TF Serving's docs write it."""
    return f"""
platform_configs {{
  key: "{platform}"
  value {{
    source_adapter_config {{
      [{adapter}] {{
        legacy_config {{ {legacy_config} }}
      }}
    }}
  }}
}}
"""


TENSORFLOW = entry(
    "tensorflow",
    """
    session_config {
      intra_op_parallelism_threads: 2
      gpu_options { allow_growth: true }
      graph_options { rewrite_options { constant_folding: OFF } }
    }
    batching_parameters {
      max_batch_size { value: 32 }
      batch_timeout_micros { value: 1000 }
      num_batch_threads { value: 1 }
      allowed_batch_sizes: [8, 32]
    }
    saved_model_tags: ["serve", "gpu"]
    enable_model_warmup: true
    model_warmup_options { num_request_iterations { value: 3 } }
    """,
)


def test_tf_servings_platform_config_is_read() -> None:
    settings = parse_platform_config(TENSORFLOW, "platform.config")
    assert list(settings) == ["tensorflow"]
    tf = settings["tensorflow"]
    assert tf.batching == BatchingOptions(
        max_batch_size=32,
        batch_timeout_micros=1000,
        num_batch_threads=1,
        allowed_batch_sizes=(8, 32),
    )
    assert (tf.warmup, tf.warmup_iterations) == (True, 3)
    assert tf.saved_model_tags == ("serve", "gpu")
    # the whole session config is kept for the TensorFlow session, not only the threads
    session = config_pb2.ConfigProto.FromString(tf.session_config)
    assert session.intra_op_parallelism_threads == 2
    assert session.gpu_options.allow_growth
    assert session.graph_options.rewrite_options.constant_folding == 2  # OFF


def test_an_empty_legacy_config_has_session_bundle_config_defaults() -> None:
    # As in TF Serving, an entry without batching_parameters does not batch and one without
    # enable_model_warmup does not warm up.
    settings = parse_platform_config(entry("tensorflow", ""), "p")
    assert settings == {"tensorflow": PlatformSettings()}
    assert settings["tensorflow"].saved_model_tags == ("serve",)
    empty = entry("onnx", "batching_parameters {}")
    assert parse_platform_config(empty, "p")["onnx"].batching == BatchingOptions()


@pytest.mark.parametrize(
    ("options", "iterations"),
    [
        ("", 1),
        ("model_warmup_options {}", 1),
        ("model_warmup_options { num_request_iterations {} }", 0),
        ("model_warmup_options { num_request_iterations { value: -2 } }", 0),
    ],
)
def test_warmup_iterations_follow_tf_serving(options: str, iterations: int) -> None:
    # saved_model_warmup_util: unset means once; a set value is taken as it is (0 replays none).
    settings = parse_platform_config(entry("tensorflow", options), "p")["tensorflow"]
    assert settings.warmup_iterations == iterations


def test_servoirs_other_runtimes_have_entries_too() -> None:
    text = entry("onnxruntime", "enable_model_warmup: true") + entry("torch", "")
    settings = parse_platform_config(text, "p")
    assert sorted(settings) == ["onnx", "pytorch"]
    assert settings["onnx"].warmup and not settings["pytorch"].warmup


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            entry("tflite", ""),
            "PlatformConfigMap has an entry for unknown platform 'tflite' (known: onnx, python, "
            "pytorch, tensorflow)",
        ),
        (entry("onnx", "") + entry("onnxruntime", ""), "configures platform onnx twice"),
        (
            entry("onnx", "session_config { intra_op_parallelism_threads: 2 }"),
            "platform onnx: session_config applies to TensorFlow models only",
        ),
        (
            entry("pytorch", 'saved_model_tags: "serve"'),
            "platform pytorch: saved_model_tags applies to TensorFlow models only",
        ),
        (
            entry("tensorflow", 'session_target: "grpc://worker:2222"'),
            "platform tensorflow: session_target 'grpc://worker:2222' is not supported",
        ),
        (
            entry(
                "tensorflow",
                "batching_parameters { max_batch_size { value: 8 } allowed_batch_sizes: 4 }",
            ),
            "platform tensorflow: Last entry in allowed_batch_sizes must match max_batch_size; "
            "last entry was 4; expected 8",
        ),
        (
            'platform_configs { key: "tensorflow" value {} }',
            "platform tensorflow: source_adapter_config is not set",
        ),
        (
            """platform_configs { key: "tensorflow" value { source_adapter_config {
                 [type.googleapis.com/tensorflow.serving.SessionBundleConfig] {} } } }""",
            "platform tensorflow: source_adapter_config tensorflow.serving.SessionBundleConfig "
            "is not supported (Servoir reads "
            "tensorflow.serving.SavedModelBundleSourceAdapterConfig)",
        ),
        (
            entry("tensorflow", "session_config { no_such_option: 1 }"),
            "Invalid protobuf file: 'platform.config': 7:42 : Message type "
            '"tensorflow.ConfigProto" has no field named "no_such_option".',
        ),
    ],
)
def test_bad_platform_configs_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ServingError) as caught:
        parse_platform_config(text, "platform.config")
    assert message in caught.value.message


def test_fields_servoir_does_not_apply_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    # TF Serving's experimental fields parse (a real config file works) and are named.
    caplog.set_level(logging.WARNING, logger="servoir.config")
    text = entry(
        "tensorflow",
        """mixed_precision: "bfloat16" session_run_load_threadpool_index {}
        remove_unused_fields_from_bundle_metagraph: true
        model_warmup_options { num_request_iterations { value: 2 }
                               num_model_warmup_threads { value: 4 } }""",
    )
    assert parse_platform_config(text, "p")["tensorflow"].warmup_iterations == 2
    assert caplog.messages == [
        "platform tensorflow: not applied by Servoir: mixed_precision, "
        "remove_unused_fields_from_bundle_metagraph, session_run_load_threadpool_index, "
        "model_warmup_options.num_model_warmup_threads"
    ]


def test_per_model_batching_parameters_in_an_entry() -> None:
    text = entry(
        "tensorflow",
        "batching_parameters { num_batch_threads { value: 2 } } "
        "enable_per_model_batching_params: true",
    )
    settings = parse_platform_config(text, "p")["tensorflow"]
    assert settings.per_model_batching
    assert settings.batching == BatchingOptions(num_batch_threads=2)


def test_errors_after_parsing_name_the_file() -> None:
    with pytest.raises(ServingError) as caught:
        parse_platform_config(entry("tflite", ""), "/etc/servoir/platform.config")
    assert caught.value.message.startswith(
        "Invalid platform config file '/etc/servoir/platform.config': PlatformConfigMap has "
        "an entry for unknown platform 'tflite'"
    )


def test_a_session_config_file_keeps_its_fields_and_set_flags_win(tmp_path: Path) -> None:
    file = tmp_path / "session.config"
    file.write_text(
        "intra_op_parallelism_threads: 4 inter_op_parallelism_threads: 3 "
        "allow_soft_placement: true gpu_options { per_process_gpu_memory_fraction: 0.25 }"
    )
    kept = config_pb2.ConfigProto.FromString(session_config(file))
    assert (kept.intra_op_parallelism_threads, kept.inter_op_parallelism_threads) == (4, 3)
    assert kept.gpu_options.per_process_gpu_memory_fraction == 0.25
    flagged = config_pb2.ConfigProto.FromString(
        session_config(file, intra=1, gpu_memory_fraction=0.5)
    )
    assert (flagged.intra_op_parallelism_threads, flagged.inter_op_parallelism_threads) == (1, 3)
    assert flagged.gpu_options.per_process_gpu_memory_fraction == 0.5
    assert flagged.allow_soft_placement
    # without a file, only what the flags set
    assert session_config(None) == b""
    alone = config_pb2.ConfigProto.FromString(session_config(None, inter=2))
    assert (alone.intra_op_parallelism_threads, alone.inter_op_parallelism_threads) == (0, 2)
    file.write_text("intra_op_parallelism_threads: many")
    with pytest.raises(ServingError) as caught:
        session_config(file)
    assert caught.value.message.startswith(f"Invalid protobuf file: '{file}': 1:31")
    with pytest.raises(ServingError) as caught:
        session_config(None, gpu_memory_fraction=-0.5)
    assert caught.value.message.endswith("must not be negative; was -0.5")


# ---- what the flags make of it ------------------------------------------------------------


def flags(tmp_path: Path, text: str, *extra: str) -> list[str]:
    file = tmp_path / "platform.config"
    file.write_text(text)
    return [f"--model_base_path={tmp_path}", f"--platform_config_file={file}", *extra]


def test_the_tensorflow_entry_replaces_the_tensorflow_and_batching_flags(tmp_path: Path) -> None:
    config = config_from_flags(
        flags(
            tmp_path,
            TENSORFLOW,
            "--saved_model_tags=other",
            "--tensorflow_session_parallelism=7",
            "--enable_model_warmup=false",
        )
    )
    runtime = config.runtime
    assert runtime.saved_model_tags == ("serve", "gpu")
    assert (runtime.tensorflow_intra_op_threads, runtime.tensorflow_inter_op_threads) == (0, 0)
    session = config_pb2.ConfigProto.FromString(runtime.tensorflow_session_config)
    assert session.intra_op_parallelism_threads == 2
    # batching comes from the entry, for TensorFlow models only (--enable_batching is off)
    assert config.batching is not None
    assert not config.batching.flags_enabled
    assert config.batching.platforms == {
        "tensorflow": parse_platform_config(TENSORFLOW, "p")["tensorflow"].batching
    }
    assert config.batching.threads == 1
    # warmup: the entry's for TensorFlow, the flag's for the other runtimes
    assert config.platform_warmup == {"tensorflow": WarmupOptions(True, 3)}
    assert config.warmup == WarmupOptions(False, 1)


def test_tensorflow_flags_the_entry_replaces_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="servoir")
    config_from_flags(
        flags(
            tmp_path,
            TENSORFLOW,
            "--tensorflow_intra_op_parallelism=2",
            "--per_process_gpu_memory_fraction=0.5",
        )
    )
    assert caplog.messages == [
        "ignored: the platform config's tensorflow entry replaces "
        "--tensorflow_intra_op_parallelism, --per_process_gpu_memory_fraction"
    ]
    caplog.clear()
    config_from_flags(flags(tmp_path, TENSORFLOW))
    assert caplog.messages == []


def test_runtimes_without_an_entry_keep_the_flags(tmp_path: Path) -> None:
    config = config_from_flags(
        flags(tmp_path, entry("onnx", ""), "--enable_batching", "--saved_model_tags=serve,tpu")
    )
    assert config.runtime.saved_model_tags == ("serve", "tpu")
    assert config.batching is not None and config.batching.flags_enabled
    assert config.batching.platforms == {"onnx": None}
    # no entry batches and --enable_batching is off: batching is off
    assert config_from_flags(flags(tmp_path, entry("onnx", ""))).batching is None


def test_a_bad_platform_config_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown platform 'tflite'"):
        config_from_flags(flags(tmp_path, entry("tflite", "")))
    missing = [f"--model_base_path={tmp_path}", f"--platform_config_file={tmp_path / 'nope'}"]
    with pytest.raises(UsageError, match="cannot read platform config file"):
        config_from_flags(missing)


def test_the_session_config_file_flag(tmp_path: Path) -> None:
    file = tmp_path / "session.config"
    file.write_text("intra_op_parallelism_threads: 4 use_per_session_threads: true")
    config = config_from_flags(
        [
            f"--model_base_path={tmp_path}",
            f"--tensorflow_session_config_file={file}",
            "--tensorflow_inter_op_parallelism=2",
            "--per_process_gpu_memory_fraction=0.4",
        ]
    )
    session = config_pb2.ConfigProto.FromString(config.runtime.tensorflow_session_config)
    assert session.intra_op_parallelism_threads == 4
    assert session.inter_op_parallelism_threads == 2
    assert session.use_per_session_threads
    assert session.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.4)
    # a platform config's tensorflow entry wins over it, as in TF Serving
    with_entry = config_from_flags(
        flags(tmp_path, entry("tensorflow", ""), f"--tensorflow_session_config_file={file}")
    )
    assert with_entry.runtime.tensorflow_session_config == b""
