"""The TensorFlow runtime through TF Serving's gRPC API, with the official client
(tensorflow_serving.apis) against a real server; REST is in test_tensorflow_runtime.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer, metric_values
from tests.integration.tf_models import (
    BROKEN,
    BuiltModels,
    example,
    metadata_json,
    requires_shared,
    saved_metadata,
    start_server,
)

pytestmark = requires_shared

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltModels:
    return BuiltModels(tmp_path_factory.mktemp("tf_models"))


@pytest.fixture(scope="module")
def server(built: BuiltModels) -> Iterator[RunningServer]:
    running = start_server(built)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    assert server.server is not None
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as c:
        yield c


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> Any:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict(stub: Any, model: str, inputs: dict[str, Any], signature: str = "") -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return stub.Predict(request, timeout=30)


def value(response: Any, alias: str) -> np.ndarray:
    return np.asarray(tf.make_ndarray(response.outputs[alias]))


def examples_input(
    input: Any, rows: list[dict[str, float]], context: dict[str, float] | None
) -> None:
    if context is None:
        input.example_list.examples.extend(example(**r) for r in rows)
    else:
        input.example_list_with_context.context.CopyFrom(example(**context))
        input.example_list_with_context.examples.extend(example(**r) for r in rows)


# ---- predict ---------------------------------------------------------------------------------


def test_predict_half_plus_two(stub: Any) -> None:
    response = predict(stub, "default", {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    spec = response.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == (
        "default",
        123,
        "serving_default",
    )


def test_predict_matches_the_module_in_process(stub: Any, built: BuiltModels) -> None:
    a = np.array([[1.0, -2.0], [0.25, 4.0], [3.0, 3.0]], np.float32)
    got = value(predict(stub, "two_signatures", {"a": a}), "out")
    np.testing.assert_allclose(got, built.two.mul(tf.constant(a))["out"].numpy(), rtol=1e-6)

    words = np.array([b"grpc", b"\xc3\xa9t\xc3\xa9"], object)
    response = predict(stub, "two_signatures", {"s": words}, "upper")
    reference = built.two.upper(tf.constant(words))
    assert value(response, "up").tolist() == reference["up"].numpy().tolist()
    np.testing.assert_array_equal(value(response, "len"), reference["len"].numpy())


def test_a_keras_export_matches_keras(stub: Any, built: BuiltModels) -> None:
    x = np.random.default_rng(11).random((5, 3), dtype=np.float32)
    (alias,) = predict(stub, "keras", {"features": x}).outputs
    got = value(predict(stub, "keras", {"features": x}), alias)
    np.testing.assert_allclose(got, built.keras_reference(x), rtol=1e-5)


def test_a_left_out_input_takes_the_signatures_default(stub: Any) -> None:
    # saved_model_half_plus_two_tf2_cpu declares x = [0.0] as a default.
    assert value(predict(stub, "tf2", {}), "y").tolist() == [2.0]


def test_the_counter_keeps_state_across_signatures(stub: Any) -> None:
    def counter(signature: str, **inputs: Any) -> float:
        return float(value(predict(stub, "counter", inputs, signature), "output"))

    assert counter("reset_counter") == 0.0
    assert counter("incr_counter") == 1.0
    assert counter("incr_counter") == 2.0
    assert counter("incr_counter_by", delta=np.float32(3.0)) == 5.0
    assert counter("get_counter") == 5.0
    assert counter("reset_counter") == 0.0


# ---- classify, regress, multi-inference --------------------------------------------------------


@pytest.mark.parametrize("context", [None, {"x": 10.0}])
def test_regress_with_and_without_context(stub: Any, context: dict[str, float] | None) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    examples_input(request.input, [{"x": 1.0}, {"x": 3.0}] if context is None else [{}], context)
    response = stub.Regress(request, timeout=30)
    expected = [2.5, 3.5] if context is None else [7.0]
    assert [r.value for r in response.result.regressions] == expected
    assert response.model_spec.signature_name == "regress_x_to_y"
    assert response.model_spec.version.value == 123


@pytest.mark.parametrize("context", [None, {"x": 3.0}])
def test_classify_with_and_without_context(stub: Any, context: dict[str, float] | None) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    examples_input(request.input, [{"x": 1.0}] if context is None else [{}, {"x": 5.0}], context)
    response = stub.Classify(request, timeout=30)
    got = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    assert got == ([[("", 2.5)]] if context is None else [[("", 3.5)], [("", 4.5)]])


def test_classify_labels_and_scores_match_the_module(stub: Any, built: BuiltModels) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "examples"
    request.model_spec.signature_name = "classify"
    examples_input(request.input, [{"x": 0.5}, {"x": -1.0}], None)
    response = stub.Classify(request, timeout=30)
    serialized = [e.SerializeToString() for e in request.input.example_list.examples]
    reference = built.examples.classify(tf.constant(serialized))
    labels = [[c.label for c in row.classes] for row in response.result.classifications]
    scores = [[c.score for c in row.classes] for row in response.result.classifications]
    assert labels == [[b.decode() for b in row] for row in reference["classes"].numpy()]
    np.testing.assert_allclose(scores, reference["scores"].numpy(), rtol=1e-6)


def test_an_empty_signature_name_is_echoed_as_serving_default(stub: Any) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "examples"  # its serving_default is a regression
    examples_input(request.input, [{"x": 2.5}], None)
    response = stub.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [5.0]
    assert response.model_spec.signature_name == "serving_default"


def classify_and_regress(rows: list[dict[str, float]]) -> Any:
    """A MultiInferenceRequest of two tasks on the default model."""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", CLASSIFY), ("regress_x_to_y2", REGRESS)):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    examples_input(request.input, rows, None)
    return request


def test_multi_inference_runs_every_task(stub: Any) -> None:
    response = stub.MultiInference(classify_and_regress([{"x": 2.0}, {"x": 4.0}]), timeout=30)
    classified, regressed = response.results
    assert [r.model_spec.signature_name for r in response.results] == [
        "classify_x_to_y",
        "regress_x_to_y2",
    ]
    assert classified.model_spec.version.value == 123
    scores = [
        [c.score for c in row.classes] for row in classified.classification_result.classifications
    ]
    assert scores == [[3.0], [4.0]]
    assert [r.value for r in regressed.regression_result.regressions] == [4.0, 5.0]


def example_metrics(server: RunningServer, model: str) -> dict[str, float]:
    """TF Serving's request_example_counts series of one model, by name and `le`."""
    assert server.server is not None
    page = metric_values(server.server.metrics.render_tf().decode())
    return {
        series: value
        for series, value in page.items()
        if series.startswith(":tensorflow:serving:request_example_count") and model in series
    }


def test_examples_per_request_are_tf_servings_metrics(server: RunningServer, stub: Any) -> None:
    model = 'model="counter"'  # a model no other test classifies or regresses
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "counter"
    request.model_spec.signature_name = "get_counter"
    examples_input(request.input, [{"x": 1.0}], None)
    with pytest.raises(grpc.RpcError):  # refused before running: not counted
        stub.Regress(request, timeout=30)
    assert example_metrics(server, model) == {}
    model = 'model="default"'
    before = example_metrics(server, model)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    examples_input(regress.input, [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], None)
    stub.Regress(regress, timeout=30)
    # two tasks, one request of two examples
    stub.MultiInference(classify_and_regress([{"x": 2.0}, {"x": 4.0}]), timeout=30)
    after = example_metrics(server, model)

    def grew(series: str) -> float:
        return after[series] - before.get(series, 0.0)

    name = ":tensorflow:serving:request_example_counts"
    assert grew(f"{name}_count{{{model}}}") == 2
    assert grew(f"{name}_sum{{{model}}}") == 5
    assert grew(f'{name}_bucket{{{model},le="1"}}') == 0
    assert grew(f'{name}_bucket{{{model},le="2"}}') == 1
    assert grew(f'{name}_bucket{{{model},le="4"}}') == 2
    assert f'{name}_bucket{{{model},le="16384"}}' in after  # TF's 15 bounds, 1 to 2^14
    assert grew(f":tensorflow:serving:request_example_count_total{{{model}}}") == 5


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("model", "signature", "rows", "code", "message"),
    [
        ("default", "regress_x_to_y", [], INVALID, "Input is empty."),
        (
            "default",
            "classify_x_to_y",
            [{"x": 1.0}],
            INVALID,
            'No regression outputs found in SignatureDef: inputs {\n  key: "inputs"\n',
        ),
        (
            "counter",
            "get_counter",
            [{"x": 1.0}],
            grpc.StatusCode.UNIMPLEMENTED,
            "Regress is not supported by model counter version 123: it has no regress "
            "signature (use Predict)",
        ),
    ],
)
def test_regress_errors(
    stub: Any, model: str, signature: str, rows: list[Any], code: Any, message: str
) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    examples_input(request.input, rows, None)
    with pytest.raises(grpc.RpcError) as info:
        stub.Regress(request, timeout=30)
    assert info.value.code() == code
    assert info.value.details().startswith(message)


def test_multi_inference_needs_one_input_tensor(stub: Any) -> None:
    # The built model's two signatures each have their own `inputs` placeholder.
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", CLASSIFY), ("serving_default", REGRESS)):
        task = request.tasks.add()
        task.model_spec.name = "examples"
        task.model_spec.signature_name = signature
        task.method_name = method
    examples_input(request.input, [{"x": 1.0}], None)
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Input tensor must be the same for all Signatures."


# ---- metadata and status -----------------------------------------------------------------------


def signature_map(stub: Any, model: str) -> Any:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return signatures


def test_metadata_equals_tf_servings_reference(stub: Any) -> None:
    expected = json.loads((SHARED_TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert metadata_json(signature_map(stub, "default")) == expected["metadata"]["signature_def"]


@pytest.mark.parametrize("model", ["tf2", "three", "counter"])
def test_metadata_is_the_saved_models_signatures(stub: Any, model: str) -> None:
    assert metadata_json(signature_map(stub, model)) == saved_metadata(model)


@pytest.mark.parametrize("model", BROKEN)
def test_a_broken_savedmodel_is_reported_in_status(channel: grpc.Channel, model: str) -> None:
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert status.state == get_model_status_pb2.ModelVersionStatus.END
    assert "saved_model.pb" in status.status.error_message
