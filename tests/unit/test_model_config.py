from pathlib import Path

import pytest

from servoir.config.model_config import (
    ModelConfig,
    check_platform_changes,
    file_configs,
    from_message,
    parse_text,
    read_file,
)
from servoir.core.labels import check_labels
from servoir.errors import Code, ServingError
from servoir.sources.versions import All, Latest, Specific
from tests.conftest import SHARED_TESTDATA

SHARED = SHARED_TESTDATA

CONFIG = """
model_config_list {
  config {
    name: "a"  base_path: "/models/a"  model_platform: "onnx"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
  config { name: "b" base_path: "/models/b" model_version_policy { all {} } }
  config { name: "c" base_path: "/models/c" model_version_policy { latest { num_versions: 2 } } }
  config { name: "d" base_path: "/models/d" model_platform: "tensorflow" }
}
"""


def test_parses_policies_labels_and_platforms() -> None:
    entries = {c.name: c for c in from_message(parse_text(CONFIG, "cfg"))}
    assert entries["a"] == ModelConfig(
        "a", Path("/models/a"), "onnx", Specific((1, 3)), {"stable": 1, "canary": 3}
    )
    assert entries["b"].policy == All() and entries["b"].platform == ""
    assert entries["c"].policy == Latest(2)
    assert entries["d"].policy == Latest(1) and entries["d"].platform == "tensorflow"


def test_shared_test_configs(tmp_path: Path) -> None:
    good = (SHARED / "good_model_config.txt").read_text()
    good = good.replace("${TEST_HALF_PLUS_TWO_DIR}", "/m/two")
    good = good.replace("${TEST_HALF_PLUS_THREE_DIR}", "/m/three")
    path = tmp_path / "good.txt"
    path.write_text(good)
    assert [c.name for c in read_file(path)] == ["half_plus_two", "half_plus_three"]
    with pytest.raises(ServingError) as info:
        read_file(SHARED / "bad_model_config.txt")
    assert info.value.message.startswith(
        f"Invalid protobuf file: '{SHARED / 'bad_model_config.txt'}': line 1, column "
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "a" base_path: "/x" } '
            'config { name: "a" base_path: "/y" } }',
            "Illegal to list model a multiple times in config list",
        ),
        (
            'model_config_list { config { name: "a" base_path: "rel/x" } }',
            "Expected model a to have an absolute path or URI; got base_path()=rel/x",
        ),
        (
            'custom_model_config { type_url: "x" }',
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: "caffe" } }',
            "Model a has unknown model_platform 'caffe' (known: onnx, python, pytorch, tensorflow)",
        ),
    ],
)
def test_invalid_configs(text: str, message: str) -> None:
    with pytest.raises(ServingError) as info:
        from_message(parse_text(text, "cfg"))
    assert (info.value.code, info.value.message) == (Code.INVALID_ARGUMENT, message)


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ServingError) as info:
        parse_text('model_config_list {\n  config { nam: "a" }\n}', "cfg.txt")
    assert info.value.message.startswith("Invalid protobuf file: 'cfg.txt': line 2, column ")
    assert "nam" in info.value.message


def test_platform_may_not_change() -> None:
    old = [ModelConfig("a", Path("/x"), "onnx")]
    check_platform_changes(old, [ModelConfig("a", Path("/y"), "onnx")])
    with pytest.raises(ServingError) as info:
        check_platform_changes(old, [ModelConfig("a", Path("/x"), "tensorflow")])
    assert info.value.message.startswith("Illegal to change a model's platform.")
    # A detected platform (no model_platform, as --model_base_path gives) may be named later,
    # and a named one left out: the files decide, as they did.
    detected = [ModelConfig("a", Path("/x"))]
    check_platform_changes(detected, [ModelConfig("a", Path("/x"), "tensorflow")])
    check_platform_changes(old, detected)


@pytest.mark.parametrize(
    ("new", "old", "available", "allow", "ok"),
    [
        ({"s": 1}, {}, {1}, False, True),
        ({"s": 2}, {}, {1}, False, False),  # not available
        ({"s": 2}, {}, {1}, True, True),  # new label: the flag allows it
        ({"s": 2}, {"s": 2}, {1}, True, True),  # unchanged: allowed with the flag
        ({"s": 2}, {"s": 1}, {1}, True, False),  # moving a live label to nowhere: never
        ({"s": 2}, {"s": 1}, {1, 2}, False, True),  # moving it to an available version
    ],
)
def test_label_rules(
    new: dict[str, int], old: dict[str, int], available: set[int], allow: bool, ok: bool
) -> None:
    if ok:
        check_labels("m", new, old, available, allow)
        return
    with pytest.raises(ServingError) as info:
        check_labels("m", new, old, available, allow)
    assert info.value.code is Code.FAILED_PRECONDITION
    assert info.value.message == (
        "Request to assign label to version 2 of model m, which is not currently available "
        "for inference"
    )


def test_an_empty_config_file_takes_no_action(tmp_path: Path) -> None:
    # TF's ReloadConfig: "Taking no action for empty config" at start-up; a running model
    # list cannot be replaced by nothing.
    path = tmp_path / "empty.config"
    path.write_text("# nothing yet\n")
    assert read_file(path) == []
    empty = parse_text("", "empty.config")
    assert file_configs(empty, replacing=False) is None
    with pytest.raises(ServingError) as info:
        file_configs(empty, replacing=True)
    assert info.value.code is Code.FAILED_PRECONDITION
    assert info.value.message == (
        "Cannot transition to requested config. It is only legal to transition from one "
        "ModelConfigList to another."
    )
