"""The TensorFlow runtime through TF Serving's REST API, against a real server.

Models: TF Serving's own test SavedModels (TF1 and TF2 exports, stateful, broken ones) and
models built here; outputs are compared with TensorFlow called in-process. gRPC, with the
official client, is in test_tensorflow_grpc.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import SHARED_TESTDATA
from tests.integration.harness import RunningServer
from tests.integration.tf_models import (
    BROKEN,
    BuiltModels,
    example,
    requires_shared,
    saved_metadata,
    start_server,
)

pytestmark = requires_shared


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltModels:
    return BuiltModels(tmp_path_factory.mktemp("tf_models"))


@pytest.fixture(scope="module")
def server(built: BuiltModels) -> Iterator[RunningServer]:
    running = start_server(built)
    yield running
    running.stop()


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def error(client: httpx.Client, path: str, body: dict[str, Any], status: int = 400) -> str:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return str(response.json()["error"])


# ---- predict -------------------------------------------------------------------------------


def test_half_plus_two_feeds_as_sent_like_tf_serving(client: httpx.Client) -> None:
    # x is declared [-1,1]; TF Serving feeds the [3] tensor as it is (contract 2.3).
    response = client.post("/v1/models/default:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert response.status_code == 200
    assert response.text.replace(" ", "") == '{"predictions":[2.5,3.0,4.5]}'


def test_half_plus_two_matches_tensorflow_in_process(client: httpx.Client) -> None:
    x = np.array([[1.0], [-3.5], [1e6]], np.float32)
    loaded = tf.saved_model.load(str(SHARED_TESTDATA / "saved_model_half_plus_two_cpu/00000123"))
    expected = loaded.signatures["serving_default"](x=tf.constant(x))["y"].numpy()
    got = post(client, "/v1/models/default:predict", {"inputs": {"x": x.tolist()}})["outputs"]
    np.testing.assert_array_equal(np.array(got, np.float32), expected)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("tf2", [2.5, 3.0, 4.5]), ("three", [3.5, 4.0, 5.5]), ("two_versions", [2.5, 3.0, 4.5])],
)
def test_tf1_and_tf2_exports_predict(
    client: httpx.Client, model: str, expected: list[float]
) -> None:
    body = {"instances": [1.0, 2.0, 5.0]}
    assert post(client, f"/v1/models/{model}:predict", body)["predictions"] == expected


def test_each_version_of_a_two_version_model(client: httpx.Client) -> None:
    for version in (123, 124):
        body = {"instances": [80.0, 20.0]}
        got = post(client, f"/v1/models/two_versions/versions/{version}:predict", body)
        assert got["predictions"] == [42.0, 12.0]
    latest = client.get("/v1/models/two_versions/metadata").json()
    assert latest["model_spec"]["version"] == "124"


def test_a_built_module_with_two_signatures(client: httpx.Client, built: BuiltModels) -> None:
    a = np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
    got = post(client, "/v1/models/two_signatures:predict", {"instances": a.tolist()})
    expected = built.two.mul(tf.constant(a))["out"].numpy()
    np.testing.assert_allclose(np.array(got["predictions"], np.float32), expected, rtol=1e-6)

    words = ["ab", "xyz", "é"]
    body = {"signature_name": "upper", "instances": words}
    got = post(client, "/v1/models/two_signatures:predict", body)["predictions"]
    reference = built.two.upper(tf.constant([w.encode() for w in words]))
    assert got == [
        {"len": int(n), "up": u.decode()}
        for n, u in zip(reference["len"].numpy(), reference["up"].numpy(), strict=True)
    ]


def test_a_keras_export(client: httpx.Client, built: BuiltModels) -> None:
    x = np.random.default_rng(3).random((4, 3), dtype=np.float32)
    got = post(client, "/v1/models/keras:predict", {"instances": x.tolist()})["predictions"]
    np.testing.assert_allclose(np.array(got, np.float32), built.keras_reference(x), rtol=1e-5)


def test_a_stateful_model_keeps_its_state(client: httpx.Client) -> None:
    body = {"signature_name": "incr_counter_by", "inputs": {"delta": 3.0}}
    first = post(client, "/v1/models/counter:predict", body)["outputs"]
    second = post(client, "/v1/models/counter:predict", body)["outputs"]
    assert second == first + 3.0


def test_a_tensorflow_run_error_is_a_400_with_tensorflows_words(client: httpx.Client) -> None:
    # Shapes are not checked before the run (TF Serving feeds as sent): TF refuses this one.
    text = error(client, "/v1/models/two_signatures:predict", {"instances": [[1.0, 2.0, 3.0]]})
    assert "Matrix size-incompatible" in text
    assert "/" not in text.split("Matrix", 1)[0]


# ---- classify and regress --------------------------------------------------------------------


def test_regress_on_half_plus_two(client: httpx.Client) -> None:
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": [3.0]}]}
    assert post(client, "/v1/models/default:regress", body) == {"results": [2.5, 3.5]}
    body["signature_name"] = "regress_x_to_y2"
    assert post(client, "/v1/models/default:regress", body) == {"results": [3.5, 4.5]}


def test_regress_with_a_context(client: httpx.Client) -> None:
    # Each example is merged over the context: the first takes x from it.
    body = {
        "signature_name": "regress_x_to_y",
        "context": {"x": 10.0},
        "examples": [{}, {"x": 3.0}],
    }
    assert post(client, "/v1/models/default:regress", body) == {"results": [7.0, 3.5]}


def test_classify_on_half_plus_two_has_scores_only(client: httpx.Client) -> None:
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 0.2}]}
    got = client.post("/v1/models/default:classify", json=body)
    assert got.status_code == 200
    assert got.text == '{"results":[[["",2.5]],[["",2.1]]]}'


def test_tf2_example_signatures_work_without_the_method_check(client: httpx.Client) -> None:
    # Every TF2 signature says tensorflow/serving/predict; the check is off by default.
    body = {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}]}
    assert post(client, "/v1/models/tf2:regress", body) == {"results": [4.0]}


def test_classify_with_labels_and_scores(client: httpx.Client, built: BuiltModels) -> None:
    body = {"signature_name": "classify", "examples": [{"x": 0.5}, {"x": -2.0}]}
    got = post(client, "/v1/models/examples:classify", body)["results"]
    serialized = [example(x=v).SerializeToString() for v in (0.5, -2.0)]
    expected = built.examples.classify(tf.constant(serialized))
    labels = expected["classes"].numpy().tolist()
    scores = expected["scores"].numpy().tolist()
    assert [[label for label, _ in row] for row in got] == [
        [b.decode() for b in row] for row in labels
    ]
    np.testing.assert_allclose([[s for _, s in row] for row in got], scores, rtol=1e-6)


def test_regress_through_the_default_signature(client: httpx.Client) -> None:
    got = post(client, "/v1/models/examples:regress", {"examples": [{"x": 1.5}, {"x": 2.0}]})
    assert got == {"results": [3.0, 4.0]}
    # 2 (no ".") is an int64 feature; the model's parse_example refuses it for x.
    text = error(client, "/v1/models/examples:regress", {"examples": [{"x": 2}]})
    assert "Data types don't match. Data type: int64 but expected type: float" in text


def test_a_model_without_example_signatures_says_use_predict(client: httpx.Client) -> None:
    body = {"examples": [{"x": 1.0}]}
    text = error(client, "/v1/models/two_signatures:classify", body, status=501)
    assert text == (
        "Classify is not supported by model two_signatures version 1: it has no classify "
        "signature (use Predict)"
    )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/models/default:classify",
            {"signature_name": "nope", "examples": [{"x": 1.0}]},
            "No signature was found with the name: nope",
        ),
        (
            "/v1/models/default:regress",
            {"examples": [{"x": 1.0}]},
            'No regression inputs found in SignatureDef: inputs {\n  key: "x"',
        ),
        (
            "/v1/models/default:classify",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores". Signature was: ',
        ),
        ("/v1/models/default:regress", {"examples": []}, "'examples' value is an empty array"),
        (
            "/v1/models/default:regress",
            {"examples": [{"x": None}]},
            "Feature: x has element with unexpected JSON type: Null",
        ),
    ],
)
def test_example_api_errors(
    client: httpx.Client, path: str, body: dict[str, Any], message: str
) -> None:
    assert message in error(client, path, body)


# ---- metadata and status -------------------------------------------------------------------


def test_metadata_equals_tf_servings_reference(client: httpx.Client) -> None:
    expected = json.loads((SHARED_TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert client.get("/v1/models/default/metadata").json() == expected


@pytest.mark.parametrize("model", ["default", "tf2", "three", "counter"])
def test_metadata_is_the_saved_models_signatures_as_tf_prints_them(
    client: httpx.Client, model: str
) -> None:
    # half_plus_three's TensorInfos have no tensor_shape (none is shown); tf2's default is
    # a whole TensorProto.
    served = client.get(f"/v1/models/{model}/metadata").json()["metadata"]["signature_def"]
    assert json.loads(json.dumps(served).replace("DT_FLOAT_REF", "DT_FLOAT")) == saved_metadata(
        model
    )


def test_a_signature_without_shapes_is_quoted_without_them(client: httpx.Client) -> None:
    message = error(client, "/v1/models/three:regress", {"examples": [{"x": [1.0]}]})
    assert message.startswith("No regression inputs found in SignatureDef: inputs {")
    assert "tensor_shape" not in message


def test_status_text_is_tf_servings(client: httpx.Client) -> None:
    text = client.get("/v1/models/default").text
    assert re.sub(r"\s", "", text) == (
        '{"model_version_status":[{"version":"123","state":"AVAILABLE",'
        '"status":{"error_code":"OK","error_message":""}}]}'
    )


def test_every_signature_is_listed_with_tensor_names(client: httpx.Client) -> None:
    signatures = client.get("/v1/models/tf2/metadata").json()["metadata"]["signature_def"][
        "signature_def"
    ]
    assert set(signatures) == {
        "serving_default", "classify_x_to_y", "classify_x2_to_y3", "regress_x_to_y",
        "regress_x_to_y2", "regress_x2_to_y3", "__saved_model_init_op",
    }  # fmt: skip
    default = signatures["serving_default"]
    assert default["inputs"]["x"]["name"] == "serving_default_x:0"
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["defaults"]["x"]["float_val"] == [0.0]
    counter = client.get("/v1/models/counter/metadata").json()["metadata"]["signature_def"]
    assert counter["signature_def"]["incr_counter_by"]["inputs"]["delta"]["tensor_shape"] == {
        "dim": [],
        "unknown_rank": True,
    }


@pytest.mark.parametrize("model", BROKEN)
def test_a_broken_savedmodel_ends_with_a_clear_error(
    client: httpx.Client, model: str, server: RunningServer
) -> None:
    status = client.get(f"/v1/models/{model}").json()["model_version_status"]
    assert [s["state"] for s in status] == ["END"]
    message = status[0]["status"]["error_message"]
    assert "No model file found in version directory" in message
    assert "saved_model.pb" in message
    assert str(SHARED_TESTDATA) not in message
    # The server keeps serving every other model.
    assert post(client, "/v1/models/default:predict", {"instances": [1.0]})["predictions"]


def test_an_error_quoting_bytes_that_are_not_utf8_keeps_tensorflows_words(
    client: httpx.Client,
) -> None:
    body = {"signature_name": "classify_x_to_y", "instances": [{"b64": "/w=="}]}
    message = error(client, "/v1/models/default:predict", body)
    assert message.startswith("Could not parse example input, value:")
    assert "\\xff" in message
