"""TF Serving's TensorFlow flags: SavedModel tags, session threads, the method-name check."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Flag = Callable[[argparse._ActionsContainer, str, object, str], None]

DEFAULT_TAGS = ("serve",)


def add_tensorflow_flags(parser: argparse.ArgumentParser, flag: Flag) -> None:
    g = parser.add_argument_group("tensorflow")
    flag(g, "saved_model_tags", ",".join(DEFAULT_TAGS),
         "comma-separated tags of the SavedModel MetaGraphDef to load")  # fmt: skip
    flag(g, "tensorflow_session_parallelism", 0,
         "threads of both TensorFlow session thread pools (0: one per core)")  # fmt: skip
    flag(g, "tensorflow_intra_op_parallelism", 0,
         "TensorFlow intra-op threads (0: one per core); overrides the session value")  # fmt: skip
    flag(g, "tensorflow_inter_op_parallelism", 0,
         "TensorFlow inter-op threads (0: one per core); overrides the session value")  # fmt: skip
    flag(g, "per_process_gpu_memory_fraction", 0.0,
         "fraction of each GPU's memory a TensorFlow session may allocate (0: TensorFlow's "
         "default)")  # fmt: skip
    flag(g, "tensorflow_session_config_file", "",
         "text tensorflow.ConfigProto for every TensorFlow session (thread flags that are "
         "set override its thread counts)")  # fmt: skip
    flag(g, "platform_config_file", "",
         "text PlatformConfigMap: a runtime's entry (SessionBundleConfig) replaces the "
         "batching, session, tag and warmup flags for that runtime's models")  # fmt: skip
    flag(g, "enable_signature_method_name_check", False,
         "Classify/Regress only on signatures whose method_name says so (TF2 exports "
         "write tensorflow/serving/predict everywhere, so this is off by default)")  # fmt: skip


def saved_model_tags(text: str) -> tuple[str, ...]:
    """`serve,gpu` -> ("serve", "gpu"); blanks are dropped, none at all means "serve"."""
    tags = tuple(tag.strip() for tag in text.split(",") if tag.strip())
    return tags or DEFAULT_TAGS


def session_threads(session: int, intra: int, inter: int) -> tuple[int, int]:
    """(intra, inter) op threads as TF Serving's server.cc picks them; 0 means TF's default.

    The intra/inter flags win when either is set; otherwise both pools get
    --tensorflow_session_parallelism. Setting all three is a usage error, as in TF Serving.
    """
    if session > 0 and intra > 0 and inter > 0:
        raise ValueError(
            "Either configure --tensorflow_session_parallelism or "
            "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all."
        )
    if intra > 0 or inter > 0:
        return max(intra, 0), max(inter, 0)
    return max(session, 0), max(session, 0)
