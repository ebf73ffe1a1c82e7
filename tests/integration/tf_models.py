"""TensorFlow models for the TensorFlow runtime's tests: TF Serving's shared test SavedModels
(../shared/testdata/tfserving) and models built here with tf.saved_model.save and Keras, plus
a server serving them all (REST and gRPC on free ports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from servoir.config.model_config import ModelConfig
from servoir.frontends.grpc.server import GrpcOptions
from servoir.server import ServerConfig
from servoir.sources.versions import All
from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer

requires_shared = pytest.mark.skipif(
    not (SHARED_TESTDATA / "saved_model_half_plus_two_cpu").is_dir(),
    reason=f"TF Serving's test SavedModels are not at {SHARED_TESTDATA}",
)

# Served name -> directory in the shared test data. "default" is the name TF Serving's own
# metadata reference (half_plus_two_model_metadata.json) was recorded under.
SHARED_MODELS = {
    "default": "saved_model_half_plus_two_cpu",
    "tf2": "saved_model_half_plus_two_tf2_cpu",
    "three": "saved_model_half_plus_three",
    "counter": "saved_model_counter",
    "two_versions": "saved_model_half_plus_two_2_versions",
    "legacy": "bad_half_plus_two",  # a pre-SavedModel export: no saved_model.pb
    "text": "tf_text_regression",  # its saved_model.pb is missing
}
BROKEN = ("legacy", "text")


def metadata_json(signature_map: Any) -> Any:
    """A SignatureDefMap as TF Serving's JsonPrinter writes it (fields without presence too).
    Reference dtypes read as their base type: Servoir's documented difference."""
    doc = json_format.MessageToDict(
        signature_map, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.loads(json.dumps(doc).replace("DT_FLOAT_REF", "DT_FLOAT"))


def saved_metadata(model: str) -> Any:
    """What TF Serving's metadata shows for a shared model: its SavedModel's SignatureDefs."""
    path = SHARED_TESTDATA / SHARED_MODELS[model] / "00000123" / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in saved.meta_graphs[0].signature_def.items():
        signature_map.signature_def[key].CopyFrom(value)
    return metadata_json(signature_map)


class TwoSignatures(tf.Module):
    """A matmul (serving_default) and a string signature with two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a")])
    def mul(self, a: Any) -> dict[str, Any]:
        return {"out": tf.matmul(a, self.w)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
    def upper(self, s: Any) -> dict[str, Any]:
        return {"up": tf.strings.upper(s), "len": tf.strings.length(s)}


def _parse_x(inputs: Any) -> Any:
    return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]


class ExampleSignatures(tf.Module):
    """tf.Example signatures as TF2 writes them (method_name predict): a regression as
    serving_default and a classification with labels and scores."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: Any) -> dict[str, Any]:
        return {"outputs": 2.0 * _parse_x(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: Any) -> dict[str, Any]:
        x = _parse_x(inputs)
        scores = tf.stack([tf.sigmoid(-x), tf.sigmoid(x)], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        return {"classes": classes, "scores": scores}


class BuiltModels:
    """Models saved into `root`, kept in memory as the in-process reference."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.two = TwoSignatures()
        tf.saved_model.save(
            self.two,
            str(root / "two_signatures" / "1"),
            signatures={"serving_default": self.two.mul, "upper": self.two.upper},
        )
        self.examples = ExampleSignatures()
        tf.saved_model.save(
            self.examples,
            str(root / "examples" / "1"),
            signatures={
                "serving_default": self.examples.regress,
                "classify": self.examples.classify,
            },
        )
        inputs = tf.keras.Input(shape=(3,), name="features")
        hidden = tf.keras.layers.Dense(4, activation="relu")(inputs)
        self.keras = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(hidden))
        self.keras.export(str(root / "keras" / "1"), verbose=False)

    def keras_reference(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.keras(x))


def example(**features: float) -> Any:
    """A tf.train.Example with float features (the official proto class)."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                k: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
                for k, v in features.items()
            }
        )
    )


def start_server(built: BuiltModels, **config: Any) -> RunningServer:
    models = [
        ModelConfig(name, SHARED_TESTDATA / directory, policy=All())
        for name, directory in SHARED_MODELS.items()
    ]
    models += [ModelConfig(n, built.root / n) for n in ("two_signatures", "examples", "keras")]
    server_config = ServerConfig(
        models=models,
        rest_port=0,
        bind_address="127.0.0.1",
        grpc=GrpcOptions(port=0, bind_address="127.0.0.1"),
        file_system_poll_wait_seconds=0,
        max_num_load_retries=0,
        **config,
    )
    return RunningServer(server_config).start()
