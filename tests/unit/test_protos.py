"""Servoir's own .proto files: generated code up to date, private pool, wire compatibility.

The wire-compatibility tests compare our descriptors with the official ones shipped in
``tensorflow-serving-api`` (needs ``tensorflow``) and ``tritonclient[grpc]``; they are skipped
when those packages are not installed.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import pkgutil
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, text_format
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)

import servoir.protos
from servoir.protos import POOL, include_files, message_class
from servoir.protos.inference import grpc_service_pb2, grpc_service_pb2_grpc
from servoir.protos.tensorflow.core.framework import tensor_pb2, types_pb2
from servoir.protos.tensorflow.core.protobuf import error_codes_pb2
from servoir.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)
from servoir.protos.tensorflow_serving.config import (
    model_server_config_pb2,
    monitoring_config_pb2,
    platform_config_pb2,
)
from servoir.protos.tensorflow_serving.servables.tensorflow import (
    saved_model_bundle_source_adapter_pb2,
    session_bundle_config_pb2,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS_DIR = REPO_ROOT / "src" / "servoir" / "protos"
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_protos.py"

# Fields of the official messages that our .proto files leave out on purpose: their types
# would pull in large TensorFlow protos (struct.proto, config.proto) that Servoir never reads.
# On the wire they survive as unknown fields.
OMITTED_FIELDS = frozenset(
    {
        ("tensorflow.TensorInfo.CompositeTensor", "type_spec"),
        ("tensorflow.serving.SessionRunRequest", "options"),
        ("tensorflow.serving.SessionRunResponse", "metadata"),
    }
)

# Triton RPCs that Servoir's GRPCInferenceService does not declare (a call gets UNIMPLEMENTED).
OMITTED_TRITON_RPCS = frozenset(
    {
        "SystemSharedMemoryStatus",
        "SystemSharedMemoryRegister",
        "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
        "TraceSetting",
        "LogSettings",
    }
)


def _all_generated_modules() -> list[ModuleType]:
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(servoir.protos.__path__, "servoir.protos.")
        if info.name.endswith(("_pb2", "_pb2_grpc"))
    )
    return [importlib.import_module(name) for name in names]


def _our_files(package_prefix: str) -> list[FileDescriptor]:
    files = [
        module.DESCRIPTOR
        for module in _all_generated_modules()
        if module.__name__.endswith("_pb2")
        and (
            module.DESCRIPTOR.package == package_prefix
            or module.DESCRIPTOR.package.startswith(package_prefix + ".")
        )
    ]
    assert files, f"no generated files for package {package_prefix}"
    return files


# ---------------------------------------------------------------------------------------------
# Descriptor comparison
# ---------------------------------------------------------------------------------------------


def _field_signature(field: FieldDescriptor) -> dict[str, Any]:
    oneof = field.containing_oneof
    return {
        "name": field.name,
        "number": field.number,
        "type": field.type,
        "repeated": field.is_repeated,
        "packed": field.is_packed if field.is_repeated else None,
        "json_name": field.json_name,
        "oneof": oneof.name if oneof is not None else None,
        "has_presence": field.has_presence,
        "message_type": field.message_type.full_name if field.message_type else None,
        "enum_type": field.enum_type.full_name if field.enum_type else None,
        "map_entry": bool(field.message_type and field.message_type.GetOptions().map_entry),
    }


def _compare_enum(ours: EnumDescriptor, theirs: EnumDescriptor, problems: list[str]) -> None:
    our_values = {v.name: v.number for v in ours.values}
    their_values = {v.name: v.number for v in theirs.values}
    if our_values != their_values:
        problems.append(f"enum {ours.full_name}: ours {our_values} != theirs {their_values}")


def _compare_message(
    ours: Descriptor,
    theirs: Descriptor,
    problems: list[str],
    seen: set[str],
    skipped: set[tuple[str, str]],
) -> None:
    """Compare two message descriptors field by field, recursing into field types."""
    if ours.full_name in seen:
        return
    seen.add(ours.full_name)
    if ours.full_name != theirs.full_name:
        problems.append(f"full name {ours.full_name} != {theirs.full_name}")
        return
    our_fields = {f.number: f for f in ours.fields}
    for their_field in theirs.fields:
        key = (theirs.full_name, their_field.name)
        if key in OMITTED_FIELDS:
            skipped.add(key)
            if their_field.number in our_fields:
                problems.append(f"{key}: listed as omitted but present in ours")
            continue
        our_field = our_fields.pop(their_field.number, None)
        where = f"{theirs.full_name}.{their_field.name} (= {their_field.number})"
        if our_field is None:
            problems.append(f"{where}: missing in ours")
            continue
        our_sig, their_sig = _field_signature(our_field), _field_signature(their_field)
        for attr, their_value in their_sig.items():
            if our_sig[attr] != their_value:
                problems.append(f"{where}: {attr} ours={our_sig[attr]!r} theirs={their_value!r}")
        if our_field.message_type is not None and their_field.message_type is not None:
            _compare_message(
                our_field.message_type, their_field.message_type, problems, seen, skipped
            )
        if our_field.enum_type is not None and their_field.enum_type is not None:
            _compare_enum(our_field.enum_type, their_field.enum_type, problems)
    for extra in our_fields.values():
        problems.append(f"{ours.full_name}.{extra.name} (= {extra.number}): not in theirs")
    their_nested = {n.name: n for n in theirs.nested_types}
    for nested in ours.nested_types:
        if nested.name in their_nested:
            _compare_message(nested, their_nested[nested.name], problems, seen, skipped)
        else:
            problems.append(f"{nested.full_name}: nested type not in theirs")
    their_enums = {e.name: e for e in theirs.enum_types}
    for enum in ours.enum_types:
        if enum.name in their_enums:
            _compare_enum(enum, their_enums[enum.name], problems)
        else:
            problems.append(f"{enum.full_name}: nested enum not in theirs")


def _compare_service(
    ours: ServiceDescriptor, theirs: ServiceDescriptor, problems: list[str]
) -> set[str]:
    """Compare the methods we declare; return the names of theirs that we do not declare."""
    their_methods = {m.name: m for m in theirs.methods}
    for method in ours.methods:
        other = their_methods.pop(method.name, None)
        if other is None:
            problems.append(f"{ours.full_name}/{method.name}: not in theirs")
            continue
        for attr in ("full_name", "client_streaming", "server_streaming"):
            if getattr(method, attr) != getattr(other, attr):
                problems.append(f"{method.full_name}: {attr} differs")
        if method.input_type.full_name != other.input_type.full_name:
            problems.append(f"{method.full_name}: input type differs")
        if method.output_type.full_name != other.output_type.full_name:
            problems.append(f"{method.full_name}: output type differs")
    return set(their_methods)


def _compare_files(
    our_files: list[FileDescriptor], their_pool: Any
) -> tuple[list[str], set[str], set[tuple[str, str]], dict[str, set[str]]]:
    problems: list[str] = []
    seen: set[str] = set()
    skipped: set[tuple[str, str]] = set()
    compared: set[str] = set()
    unmatched_rpcs: dict[str, set[str]] = {}
    for file in our_files:
        for message in file.message_types_by_name.values():
            try:
                theirs = their_pool.FindMessageTypeByName(message.full_name)
            except KeyError:
                continue
            compared.add(message.full_name)
            _compare_message(message, theirs, problems, seen, skipped)
        for enum in file.enum_types_by_name.values():
            try:
                their_enum = their_pool.FindEnumTypeByName(enum.full_name)
            except KeyError:
                continue
            _compare_enum(enum, their_enum, problems)
        for service in file.services_by_name.values():
            try:
                their_service = their_pool.FindServiceByName(service.full_name)
            except KeyError:
                problems.append(f"service {service.full_name}: not in theirs")
                continue
            unmatched_rpcs[service.full_name] = _compare_service(service, their_service, problems)
    return problems, compared, skipped, unmatched_rpcs


def _import_submodules(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__, package + "."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)


@pytest.fixture(scope="module")
def official_tfs() -> ModuleType:
    """The official tensorflow_serving.apis package (imports TensorFlow)."""
    pytest.importorskip("tensorflow_serving.apis.predict_pb2", exc_type=ImportError)
    _import_submodules("tensorflow_serving.apis")
    _import_submodules("tensorflow_serving.config")
    return importlib.import_module("tensorflow_serving.apis")


@pytest.fixture(scope="module")
def official_triton() -> ModuleType:
    module: ModuleType = pytest.importorskip("tritonclient.grpc.service_pb2", exc_type=ImportError)
    return module


# ---------------------------------------------------------------------------------------------
# (a) generated code is up to date
# ---------------------------------------------------------------------------------------------


def _generated_tree(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if len(rel.parts) == 1 and not rel.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")):
            continue  # hand-written: __init__.py, _pool.py
        yield rel


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools.protoc")
    committed = PROTOS_DIR / "tensorflow_serving" / "apis" / "prediction_service_pb2_grpc.py"
    match = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", committed.read_text())
    assert match, "cannot find the grpcio-tools version the committed code was generated with"
    installed = importlib.metadata.version("grpcio-tools")
    if installed != match.group(1):
        pytest.skip(
            f"committed code was generated with grpcio-tools {match.group(1)}, "
            f"installed is {installed}: outputs are not comparable"
        )
    out = tmp_path / "protos"
    result = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = list(_generated_tree(out))
    assert fresh == list(_generated_tree(PROTOS_DIR)), (
        "generated file set differs; run python scripts/gen_protos.py"
    )
    stale = [rel for rel in fresh if (out / rel).read_bytes() != (PROTOS_DIR / rel).read_bytes()]
    assert not stale, f"stale generated files {stale}; run python scripts/gen_protos.py"


def test_generated_code_is_rewritten_into_servoir_protos() -> None:
    top = re.compile(r"^(?:from|import) (?:tensorflow|tensorflow_serving|inference)\b", re.M)
    for rel in _generated_tree(PROTOS_DIR):
        text = (PROTOS_DIR / rel).read_text()
        assert not top.search(text), f"{rel}: imports a top-level proto package"
        assert "_descriptor_pool.Default()" not in text, f"{rel}: uses the default pool"


# ---------------------------------------------------------------------------------------------
# The private pool and contract facts that need no reference package
# ---------------------------------------------------------------------------------------------


def test_every_generated_module_registers_in_the_private_pool() -> None:
    modules = [m for m in _all_generated_modules() if m.__name__.endswith("_pb2")]
    assert len(modules) >= 30
    for module in modules:
        file = module.DESCRIPTOR
        assert file.pool is POOL, module.__name__
        assert POOL.FindFileByName(file.name) is file
        for message in file.message_types_by_name.values():
            assert getattr(module, message.name).__module__ == module.__name__


def test_service_method_paths() -> None:
    def paths(service: ServiceDescriptor) -> list[str]:
        return [f"/{service.full_name}/{m.name}" for m in service.methods]

    prediction = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    assert paths(prediction) == [
        "/tensorflow.serving.PredictionService/Classify",
        "/tensorflow.serving.PredictionService/Regress",
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/MultiInference",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
    ]
    model = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    assert paths(model) == [
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
    ]
    v2 = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in v2.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    ]
    stream = v2.methods_by_name["ModelStreamInfer"]
    assert stream.client_streaming and stream.server_streaming
    # The generated servicer helpers exist for the servers to use.
    assert hasattr(prediction_service_pb2_grpc, "add_PredictionServiceServicer_to_server")
    assert hasattr(model_service_pb2_grpc, "add_ModelServiceServicer_to_server")
    assert hasattr(grpc_service_pb2_grpc, "add_GRPCInferenceServiceServicer_to_server")


def test_contract_enums_and_json_names() -> None:
    assert types_pb2.DT_FLOAT == 1 and types_pb2.DT_STRING == 7 and types_pb2.DT_HALF == 19
    assert types_pb2.DT_FLOAT8_E4M3FN == 25 and types_pb2.DT_FLOAT_REF == 101
    assert error_codes_pb2.Code.DESCRIPTOR.full_name == "tensorflow.error.Code"
    assert error_codes_pb2.UNAUTHENTICATED == 16 and error_codes_pb2.DATA_LOSS == 15
    state = get_model_status_pb2.ModelVersionStatus
    assert [state.START, state.LOADING, state.AVAILABLE, state.UNLOADING, state.END] == [
        10,
        20,
        30,
        40,
        50,
    ]
    response = get_model_status_pb2.GetModelStatusResponse.DESCRIPTOR
    assert response.fields_by_name["model_version_status"].json_name == "model_version_status"
    status_fields = status_pb2.StatusProto.DESCRIPTOR.fields_by_name
    assert status_fields["error_code"].json_name == "error_code"
    assert status_fields["error_message"].json_name == "error_message"

    msg = get_model_status_pb2.GetModelStatusResponse()
    entry = msg.model_version_status.add(version=123, state=state.AVAILABLE)
    entry.status.error_code = error_codes_pb2.OK
    as_json = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    assert as_json == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }

    tensor = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name
    assert tensor["float_val"].is_packed and tensor["half_val"].number == 13
    assert tensor["float8_val"].number == 18


def test_signature_def_map_any_round_trip() -> None:
    sigs = get_model_metadata_pb2.SignatureDefMap()
    sig = sigs.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["x"].name = "x:0"
    sig.inputs["x"].dtype = types_pb2.DT_FLOAT
    sig.inputs["x"].tensor_shape.dim.add(size=-1)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 123
    response.metadata["signature_def"].Pack(sigs)
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert packed.Is(get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR)
    back = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(back) and back == sigs

    as_json = json_format.MessageToDict(
        response, preserving_proto_field_name=True, descriptor_pool=POOL
    )
    assert as_json["metadata"]["signature_def"]["@type"] == packed.type_url
    assert as_json["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"][
        "x"
    ] == {"name": "x:0", "dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}}


def test_well_known_types_come_from_the_private_pool() -> None:
    int64_value = message_class("google.protobuf.Int64Value")
    spec = predict_pb2.PredictRequest(model_spec={"name": "m"}).model_spec
    spec.version.CopyFrom(int64_value(value=7))
    assert spec.WhichOneof("version_choice") == "version" and spec.version.value == 7
    with pytest.raises(KeyError):
        message_class("no.such.Message")


def test_text_format_configs() -> None:
    config = text_format.Parse(
        textwrap.dedent(
            """
            model_config_list {
              config {
                name: "half_plus_two"
                base_path: "/models/half_plus_two"
                model_platform: "tensorflow"
                model_version_policy { specific { versions: 123 versions: 124 } }
                version_labels { key: "stable" value: 123 }
              }
            }
            """
        ),
        model_server_config_pb2.ModelServerConfig(),
    )
    model = config.model_config_list.config[0]
    assert model.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(model.model_version_policy.specific.versions) == [123, 124]
    assert dict(model.version_labels) == {"stable": 123}

    batching = text_format.Parse(
        "max_batch_size { value: 128 } batch_timeout_micros { value: 0 } "
        "max_enqueued_batches { value: 1000000 } num_batch_threads { value: 8 }",
        session_bundle_config_pb2.BatchingParameters(),
    )
    assert batching.max_batch_size.value == 128 and batching.HasField("batch_timeout_micros")
    assert not batching.HasField("thread_pool_name")

    monitoring = text_format.Parse(
        "prometheus_config { enable: true path: '/metrics' }",
        monitoring_config_pb2.MonitoringConfig(),
    )
    assert monitoring.prometheus_config.enable

    # An Any expanded in text format resolves its type through the pool it is given.
    platform_text = (
        'platform_configs { key: "tensorflow" value { source_adapter_config {'
        " [type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] {"
        " legacy_config { batching_parameters { max_batch_size { value: 8 } } } } } } }"
    )
    platform = text_format.Parse(
        platform_text, platform_config_pb2.PlatformConfigMap(), descriptor_pool=POOL
    )
    # (The Any's type is in POOL because its module is imported above, as any type must be.)
    adapter = saved_model_bundle_source_adapter_pb2.SavedModelBundleSourceAdapterConfig()
    assert platform.platform_configs["tensorflow"].source_adapter_config.Unpack(adapter)
    assert adapter.legacy_config.batching_parameters.max_batch_size.value == 8

    custom = model_server_config_pb2.ModelServerConfig()
    custom.custom_model_config.Pack(config)
    assert (
        text_format.Parse(
            text_format.MessageToString(custom, descriptor_pool=POOL),
            model_server_config_pb2.ModelServerConfig(),
            descriptor_pool=POOL,
        )
        == custom
    )


def test_prediction_log_warmup_record() -> None:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": 2}]}, float_val=[1, 2]
        )
    )
    parsed = prediction_log_pb2.PredictionLog.FromString(log.SerializeToString())
    assert parsed.WhichOneof("log_type") == "predict_log"
    assert list(parsed.predict_log.request.inputs["x"].float_val) == [1.0, 2.0]


def test_reflection_answers_from_the_private_pool() -> None:
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    reflection = pytest.importorskip("grpc_reflection.v1alpha.reflection")
    reflection_pb2 = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2")
    reflection_db = pytest.importorskip(
        "grpc_reflection.v1alpha.proto_reflection_descriptor_database"
    )

    include_files(health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    include_files(health_pb2.DESCRIPTOR)  # idempotent
    names = (
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "inference.GRPCInferenceService",
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )

    def query(port: int) -> dict[str, Any]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            database = reflection_db.ProtoReflectionDescriptorDatabase(channel)
            client_pool = descriptor_pool.DescriptorPool(database)
            predict = client_pool.FindServiceByName("tensorflow.serving.PredictionService")
            tensor = client_pool.FindMessageTypeByName("tensorflow.TensorProto")
            return {
                "services": sorted(database.get_services()),
                "predict_input": predict.methods_by_name["Predict"].input_type.full_name,
                "float_val": tensor.fields_by_name["float_val"].number,
                "health": client_pool.FindServiceByName("grpc.health.v1.Health").full_name,
            }

    async def run() -> dict[str, Any]:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            prediction_service_pb2_grpc.PredictionServiceServicer(), server
        )
        reflection.enable_server_reflection(names, server, pool=POOL)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await asyncio.wait_for(asyncio.to_thread(query, port), timeout=30)
        finally:
            await server.stop(None)

    answer = asyncio.run(run())
    assert answer == {
        "services": sorted(names),
        "predict_input": "tensorflow.serving.PredictRequest",
        "float_val": 5,
        "health": "grpc.health.v1.Health",
    }


# ---------------------------------------------------------------------------------------------
# (b) wire compatibility with tensorflow-serving-api
# ---------------------------------------------------------------------------------------------


def test_tf_serving_descriptors_match(official_tfs: ModuleType) -> None:
    """Packages tensorflow.serving, tensorflow and tensorflow.error against TF's default pool."""
    their_pool = descriptor_pool.Default()
    our_files = _our_files("tensorflow")
    problems, compared, skipped, unmatched = _compare_files(our_files, their_pool)
    assert not problems, "\n".join(problems)
    assert skipped == OMITTED_FIELDS
    assert unmatched == {
        "tensorflow.serving.PredictionService": set(),
        "tensorflow.serving.ModelService": set(),
        "tensorflow.serving.SessionService": set(),
    }
    # Every message the official package defines in tensorflow.serving exists in ours.
    theirs: set[str] = set()
    for name in list(sys.modules):
        module = sys.modules[name]
        if name.startswith("tensorflow_serving.") and name.endswith("_pb2") and module:
            theirs.update(
                m.full_name
                for m in module.DESCRIPTOR.message_types_by_name.values()
                if m.full_name.startswith("tensorflow.serving.")
            )
    assert theirs and theirs <= compared, sorted(theirs - compared)
    assert {"tensorflow.TensorProto", "tensorflow.SequenceExample", "tensorflow.SignatureDef"} <= (
        compared
    )


# ---------------------------------------------------------------------------------------------
# (c) wire compatibility with tritonclient
# ---------------------------------------------------------------------------------------------


def test_triton_descriptors_match(official_triton: ModuleType) -> None:
    their_pool = official_triton.DESCRIPTOR.pool
    problems, compared, skipped, unmatched = _compare_files(_our_files("inference"), their_pool)
    assert not problems, "\n".join(problems)
    assert not skipped
    assert unmatched == {"inference.GRPCInferenceService": OMITTED_TRITON_RPCS}
    assert {"inference.ModelInferRequest", "inference.ModelConfig"} <= compared


# ---------------------------------------------------------------------------------------------
# (d) our classes and the official ones in one process, across pools
# ---------------------------------------------------------------------------------------------


def test_predict_round_trip_with_official_client(official_tfs: ModuleType) -> None:
    theirs_predict = importlib.import_module("tensorflow_serving.apis.predict_pb2")
    theirs_metadata = importlib.import_module("tensorflow_serving.apis.get_model_metadata_pb2")
    assert theirs_predict.PredictRequest.DESCRIPTOR.file.pool is descriptor_pool.Default()

    ours = predict_pb2.PredictRequest()
    ours.model_spec.name = "half_plus_two"
    ours.model_spec.version.value = 123
    ours.model_spec.signature_name = "serving_default"
    x = ours.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add(size=3)
    x.float_val.extend([1.0, 2.0, 5.0])
    ours.inputs["s"].dtype = types_pb2.DT_STRING
    ours.inputs["s"].string_val.append(b"\x00bytes")
    ours.output_filter.append("y")
    options = predict_pb2.PredictRequest.RequestOptions
    ours.request_options.deterministic_mode = options.FIXED_DECODER_SLOT

    theirs = theirs_predict.PredictRequest.FromString(ours.SerializeToString())
    assert theirs.model_spec.version.value == 123
    assert list(theirs.inputs["x"].float_val) == [1.0, 2.0, 5.0]
    assert theirs.inputs["s"].string_val[0] == b"\x00bytes"
    assert theirs.request_options.HasField("deterministic_mode")
    assert predict_pb2.PredictRequest.FromString(theirs.SerializeToString()) == ours

    # And the other way: the official response parsed by ours.
    their_response = theirs_predict.PredictResponse()
    their_response.model_spec.name = "half_plus_two"
    their_response.outputs["y"].dtype = 1
    their_response.outputs["y"].float_val.extend([2.5, 3.0, 4.5])
    our_response = predict_pb2.PredictResponse.FromString(their_response.SerializeToString())
    assert list(our_response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert our_response.SerializeToString(deterministic=True) == their_response.SerializeToString(
        deterministic=True
    )

    # Metadata: our Any-packed SignatureDefMap unpacks with the official classes.
    sigs = get_model_metadata_pb2.SignatureDefMap()
    sigs.signature_def["serving_default"].outputs["y"].name = "y:0"
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.metadata["signature_def"].Pack(sigs)
    their_meta = theirs_metadata.GetModelMetadataResponse.FromString(response.SerializeToString())
    their_sigs = theirs_metadata.SignatureDefMap()
    assert their_meta.metadata["signature_def"].Unpack(their_sigs)
    assert their_sigs.signature_def["serving_default"].outputs["y"].name == "y:0"


def test_v2_round_trip_with_tritonclient(official_triton: ModuleType) -> None:
    np = pytest.importorskip("numpy")
    tritonclient_grpc = pytest.importorskip("tritonclient.grpc", exc_type=ImportError)

    infer_input = tritonclient_grpc.InferInput("INPUT0", [2, 2], "FP32")
    infer_input.set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(2, 2))
    their_request = official_triton.ModelInferRequest(model_name="m", model_version="1")
    their_request.inputs.extend([infer_input._get_tensor()])
    their_request.raw_input_contents.extend([infer_input._get_content()])
    their_request.parameters["priority"].uint64_param = 3

    ours = grpc_service_pb2.ModelInferRequest.FromString(their_request.SerializeToString())
    assert ours.inputs[0].name == "INPUT0" and list(ours.inputs[0].shape) == [2, 2]
    decoded = np.frombuffer(ours.raw_input_contents[0], dtype="<f4").reshape(2, 2)
    assert decoded.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert ours.parameters["priority"].WhichOneof("parameter_choice") == "uint64_param"

    response = grpc_service_pb2.ModelInferResponse(model_name="m", model_version="1")
    output = response.outputs.add(name="OUTPUT0", datatype="FP32", shape=[2, 2])
    output.parameters["binary_data_size"].int64_param = 16
    response.raw_output_contents.append(np.ones((2, 2), dtype="<f4").tobytes())
    result = tritonclient_grpc.InferResult(
        official_triton.ModelInferResponse.FromString(response.SerializeToString())
    )
    assert result.as_numpy("OUTPUT0").tolist() == [[1.0, 1.0], [1.0, 1.0]]

    config = grpc_service_pb2.ModelConfigResponse()
    config.config.name = "m"
    config.config.max_batch_size = 8
    config.config.input.add(name="INPUT0", data_type=11, dims=[-1])
    their_config = official_triton.ModelConfigResponse.FromString(config.SerializeToString())
    assert their_config.config.input[0].data_type == 11  # TYPE_FP32


def test_official_packages_imported_first_then_ours() -> None:
    """Import order must not matter: the official modules first, ours second, one process."""
    pytest.importorskip("tensorflow_serving.apis.predict_pb2", exc_type=ImportError)
    code = textwrap.dedent(
        """
        from tensorflow_serving.apis import predict_pb2 as theirs
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        from servoir.protos.tensorflow_serving.apis import predict_pb2 as ours
        from servoir.protos.tensorflow_serving.apis import prediction_service_pb2_grpc as svc
        r = ours.PredictRequest()
        r.model_spec.name = "m"
        r.inputs["x"].float_val.append(1.5)
        t = theirs.PredictRequest.FromString(r.SerializeToString())
        assert t.inputs["x"].float_val[0] == 1.5
        assert ours.PredictRequest.FromString(t.SerializeToString()) == r
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=240
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")


def test_descriptor_comparison_catches_mismatches() -> None:
    """Guard for the comparison helpers: a changed copy of our own files must be flagged."""
    mutated_pool = descriptor_pool.DescriptorPool()
    file_names = [
        "google/protobuf/wrappers.proto",
        "tensorflow/core/framework/types.proto",
        "tensorflow/core/framework/tensor_shape.proto",
        "tensorflow/core/framework/resource_handle.proto",
        "tensorflow/core/framework/tensor.proto",
        "tensorflow_serving/apis/model.proto",
        "tensorflow_serving/apis/predict.proto",
    ]
    for name in file_names:
        proto = descriptor_pb2.FileDescriptorProto()
        POOL.FindFileByName(name).CopyToProto(proto)
        for message in proto.message_type:
            for field in message.field:
                if message.name == "TensorProto" and field.name == "float_val":
                    field.type = descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE
                if message.name == "ModelSpec" and field.name == "signature_name":
                    field.number = 30
        for enum in proto.enum_type:
            if enum.name == "DataType":
                enum.value[1].number = 99
        mutated_pool.Add(proto)

    problems, compared, _, _ = _compare_files([predict_pb2.DESCRIPTOR], mutated_pool)
    assert "tensorflow.serving.PredictRequest" in compared
    text = "\n".join(problems)
    assert "tensorflow.TensorProto.float_val (= 5): type" in text
    assert "tensorflow.serving.ModelSpec.signature_name (= 30): missing in ours" in text
    assert "ModelSpec.signature_name (= 3): not in theirs" in text
    assert "enum tensorflow.DataType" in text
