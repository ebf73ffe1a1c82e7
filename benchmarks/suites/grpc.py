"""gRPC suite: single-example TF Serving Predict on the example MLP, Servoir against MLServer.

Servoir serves `examples/models/mlp` over TF Serving's gRPC API (and, from the same process,
REST and KServe V2 gRPC); MLServer 1.7.1 serves the same ONNX file through a small custom
onnxruntime runtime (benchmarks/mlserver_runtime.py), with its default settings, over its
V2 gRPC API. Targets:

  servoir_grpc       Servoir, PredictionService/Predict (x as tensor_content)      h2load
  servoir_v2_grpc    Servoir, GRPCInferenceService/ModelInfer (raw_input_contents) h2load
  mlserver_grpc      MLServer, the same ModelInfer request                         h2load
  servoir_rest       Servoir, REST predict (the rest suite's body)                 wrk
  servoir_grpc_py    Servoir, Predict, the Python grpc.aio generator (grpc_load.py)
  mlserver_grpc_py   MLServer, ModelInfer, the Python grpc.aio generator
  baseline_grpc      a bare grpc.aio Predict handler (benchmarks/baseline_fastapi.py
                     --grpc_port): the floor of Python gRPC serving cost              h2load

Each request is serialized once and sent as bytes (h2load: one pre-framed gRPC message, see
benchmarks/grpc_h2load.py; grpc_load.py: a generic unary call without serializers), so the
clients do no protobuf work. Both servers run for the whole suite; measurements interleave
the targets at each concurrency, flipping the order on every repeat, and each number is a
median over repeats. Every target's answer is checked against onnxruntime's own output
before any load. The load generators' CPU time per request is measured too (they share the
two cores with the servers). Goal: servoir_grpc req/s at 32 clients >= 3x mlserver_grpc's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson

from benchmarks import mlserver_setup, raw_ort
from benchmarks.core import EXAMPLE_MODELS, RunConfig, SuiteResult, Table
from benchmarks.grpc_h2load import frame, h2load_path, h2load_version, run_h2load_grpc
from benchmarks.grpc_load import run_grpc_load
from benchmarks.loadgen import LoadgenError, WrkResult, run_wrk
from benchmarks.payload import mlp_instances, tf_serving_predict_body
from benchmarks.servers import ServerError, ServerProcess, ServerSpec, baseline_spec, free_port
from benchmarks.stats import fmt, ratio, summarize

NAME = "grpc"
MODEL = "mlp"
INPUT, OUTPUT = "x", "logits"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
GOAL_RATIO = 3.0  # servoir_grpc over mlserver_grpc, req/s at the most clients
GOAL_PAIR = ("servoir_grpc", "mlserver_grpc")
FLAGS_ENV = "SERVOIR_GRPC_FLAGS"  # extra `servoir serve` flags, to try settings
MLSERVER_READY_DEADLINE_S = 300.0  # first start imports a lot and forks a worker


@dataclass(frozen=True)
class Target:
    name: str
    server: str  # servoir | mlserver
    api: str  # tfs_grpc | v2_grpc | rest
    generator: str  # h2load | wrk | python


TARGETS = (
    Target("servoir_grpc", "servoir", "tfs_grpc", "h2load"),
    Target("servoir_v2_grpc", "servoir", "v2_grpc", "h2load"),
    Target("mlserver_grpc", "mlserver", "v2_grpc", "h2load"),
    Target("servoir_rest", "servoir", "rest", "wrk"),
    Target("servoir_grpc_py", "servoir", "tfs_grpc", "python"),
    Target("mlserver_grpc_py", "mlserver", "v2_grpc", "python"),
    Target("baseline_grpc", "baseline", "tfs_grpc", "h2load"),
)
# Ratios reported at every concurrency: (numerator, denominator).
RATIOS = (
    ("servoir_grpc", "mlserver_grpc"),
    ("servoir_v2_grpc", "mlserver_grpc"),
    ("servoir_grpc_py", "mlserver_grpc_py"),
    ("servoir_grpc", "servoir_rest"),
    ("servoir_grpc_py", "servoir_grpc"),
    ("servoir_grpc", "baseline_grpc"),
)


@dataclass
class Running:
    """A started server and its gRPC port."""

    process: ServerProcess
    grpc_port: int


@dataclass(frozen=True)
class Bodies:
    """The requests, serialized (for grpc_load.py) and framed (for h2load) on disk."""

    rest: Path
    message: dict[str, Path]  # api -> serialized request
    framed: dict[str, Path]  # api -> gRPC length-prefixed message


def run(config: RunConfig) -> SuiteResult:
    work = config.work_dir / NAME
    work.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()
    x = mlp_instances(seed=0)
    model_file = _latest_model()
    expected = raw_ort.reference_output(model_file, x)
    bodies = _write_bodies(work, x)
    problems: list[str] = []
    notes: list[str] = []
    raw = raw_ort.measure(
        model_file,
        x,
        repeats=max(3, config.repeats),
        seconds_per_repeat=min(1.0, config.duration_s / 3),
    )
    wanted = [t for t in TARGETS if config.targets is None or t.name in config.targets]
    try:
        h2load_path()
    except LoadgenError as e:
        problems.append(f"h2load targets not measured: {e}")
        wanted = [t for t in wanted if t.generator != "h2load"]
    mlserver_info: dict[str, Any] = {"version": None, "not_measured": None}
    if any(t.server == "mlserver" for t in wanted):
        try:
            mlserver_info["version"] = mlserver_setup.ensure_venv(
                work / "logs" / "mlserver-pip.log"
            )
        except mlserver_setup.MLServerUnavailable as e:
            mlserver_info["not_measured"] = f"MLServer could not be installed: {e}"
            notes.append(f"MLServer NOT MEASURED: {e}")
            wanted = [t for t in wanted if t.server != "mlserver"]

    targets: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Running] = {}
        for server_name in dict.fromkeys(t.server for t in wanted):
            running = _start(stack, server_name, work, model_file, problems)
            if running is None:
                if server_name == "mlserver":
                    mlserver_info["not_measured"] = "MLServer did not start (see problems)"
                continue
            servers[server_name] = running
        answer_bytes: dict[str, int] = {}
        live: list[Target] = []
        for target in wanted:
            if target.server not in servers:
                continue
            check = _preflight(target, servers[target.server], bodies, expected)
            targets[target.name] = {
                "server": target.server,
                "api": target.api,
                "generator": target.generator,
                "command": servers[target.server].process.spec.argv(
                    servers[target.server].process.port
                ),
                "preflight": check,
            }
            if not check["ok"]:
                problems.append(f"{target.name} failed the preflight request: {check}")
                continue
            answer_bytes[target.name] = check["answer_bytes"]
            live.append(target)
        runs = _measure(config, work, live, servers, bodies, answer_bytes, problems)
        for target in live:
            by_c = runs.get(target.name, {})
            targets[target.name]["by_connections"] = {
                str(c): {
                    "median": summarize([r for r, _, _ in results], [s for _, s, _ in results]),
                    "loadgen_cpu_s": [g for _, _, g in results],
                    "runs": [r.to_json() for r, _, _ in results],
                }
                for c, results in by_c.items()
                if results
            }
        for name, running in servers.items():
            if not running.process.alive():
                problems.append(f"{name} died during the suite:\n{running.process.log_tail()}")
    return _result(config, raw, targets, mlserver_info, load_at_start, notes, problems)


def _latest_model() -> Path:
    base = EXAMPLE_MODELS / MODEL
    version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    return base / str(version) / "model.onnx"


def _write_bodies(work: Path, x: np.ndarray) -> Bodies:
    from servoir.protos.inference import grpc_service_pb2 as v2
    from servoir.protos.tensorflow.core.framework import types_pb2
    from servoir.protos.tensorflow_serving.apis import predict_pb2

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = MODEL
    tensor = predict.inputs[INPUT]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = x.tobytes()

    infer = v2.ModelInferRequest(model_name=MODEL)
    infer.inputs.add(name=INPUT, datatype="FP32", shape=list(x.shape))
    infer.raw_input_contents.append(x.tobytes())

    messages = {"tfs_grpc": predict.SerializeToString(), "v2_grpc": infer.SerializeToString()}
    rest = work / "rest.json"
    rest.write_bytes(tf_serving_predict_body(x))
    message_paths, framed_paths = {}, {}
    for api, data in messages.items():
        message_paths[api] = work / f"{api}.bin"
        message_paths[api].write_bytes(data)
        framed_paths[api] = work / f"{api}.frame"
        framed_paths[api].write_bytes(frame(data))
    return Bodies(rest, message_paths, framed_paths)


def _servoir_spec(grpc_port: int) -> ServerSpec:
    command = (
        f"{{bin}}/servoir serve --port={grpc_port} --rest_api_port={{rest_port}}"
        " --model_name={model_name} --model_base_path={model_base_path}"
        f" {os.environ.get(FLAGS_ENV, '')}"
    )
    return ServerSpec("servoir", command, MODEL, EXAMPLE_MODELS / MODEL, b"AVAILABLE")


def _start(
    stack: contextlib.ExitStack,
    server_name: str,
    work: Path,
    model_file: Path,
    problems: list[str],
) -> Running | None:
    grpc_port = free_port()
    deadline = 60.0
    if server_name == "servoir":
        spec: ServerSpec = _servoir_spec(grpc_port)
    elif server_name == "baseline":
        spec = baseline_spec(MODEL)
        spec = dataclasses.replace(spec, command=f"{spec.command} --grpc_port={grpc_port}")
    else:
        root = work / "mlserver"
        models = mlserver_setup.write_model_folder(root, MODEL, model_file)
        spec = mlserver_setup.spec(root, models, MODEL, grpc_port, free_port())
        deadline = MLSERVER_READY_DEADLINE_S
    if (reason := spec.unavailable_reason()) is not None:
        problems.append(f"{server_name} not measured: {reason}")
        return None
    process = ServerProcess(spec, work / "logs", ready_deadline_s=deadline)
    try:
        stack.enter_context(process)
    except ServerError as e:
        problems.append(f"{server_name} did not start: {e}")
        return None
    return Running(process, grpc_port)


def _preflight(
    target: Target, running: Running, bodies: Bodies, expected: np.ndarray
) -> dict[str, Any]:
    """One request, its answer decoded and compared with onnxruntime's (within 1e-4)."""
    try:
        if target.api == "rest":
            raw_answer = _post(
                f"{running.process.base_url}/v1/models/{MODEL}:predict", bodies.rest.read_bytes()
            )
            got = np.asarray(orjson.loads(raw_answer)["predictions"], np.float32)
        else:
            method = PREDICT if target.api == "tfs_grpc" else MODEL_INFER
            raw_answer = _grpc_call(
                running.grpc_port, method, bodies.message[target.api].read_bytes()
            )
            got = _decode_grpc(target.api, raw_answer)
    except Exception as e:  # any failure to get or read an answer fails the preflight
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    shape_ok = got.shape == expected.shape
    matches = bool(shape_ok and np.allclose(got, expected, rtol=1e-4, atol=1e-5))
    return {
        "ok": matches,
        "shape": list(got.shape),
        "matches_reference": matches,
        "answer_bytes": len(raw_answer),
    }


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"HTTP {e.code}: {e.read()[:300]!r}") from e


def _grpc_call(port: int, method: str, message: bytes) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        call: Callable[..., bytes] = channel.unary_unary(method)
        return call(message, timeout=30)


def _decode_grpc(api: str, answer: bytes) -> np.ndarray:
    from servoir.protos.inference import grpc_service_pb2 as v2
    from servoir.protos.tensorflow_serving.apis import predict_pb2

    if api == "tfs_grpc":
        tensor = predict_pb2.PredictResponse.FromString(answer).outputs[OUTPUT]
        shape = [d.size for d in tensor.tensor_shape.dim]
        if tensor.tensor_content:
            return np.frombuffer(tensor.tensor_content, np.float32).reshape(shape)
        return np.asarray(tensor.float_val, np.float32).reshape(shape)
    response = v2.ModelInferResponse.FromString(answer)
    for index, output in enumerate(response.outputs):
        if output.name == OUTPUT:
            if len(response.raw_output_contents) > index:
                values = np.frombuffer(response.raw_output_contents[index], np.float32)
            else:
                values = np.asarray(output.contents.fp32_contents, np.float32)
            return values.reshape(list(output.shape))
    raise RuntimeError(f"no output {OUTPUT!r} in the answer")


def _children_cpu_s() -> float:
    """CPU seconds of the finished child processes (the load generators; the servers are
    waited for only when they stop)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


Measured = tuple[WrkResult, float, float]  # result, server CPU s, load generator CPU s


def _measure(
    config: RunConfig,
    work: Path,
    targets: list[Target],
    servers: dict[str, Running],
    bodies: Bodies,
    answer_bytes: dict[str, int],
    problems: list[str],
) -> dict[str, dict[int, list[Measured]]]:
    runs: dict[str, dict[int, list[Measured]]] = {t.name: {} for t in targets}
    h2load_log = work / "h2load-requests.tsv"

    def one(target: Target, connections: int, seconds: float) -> Measured | None:
        running = servers[target.server]
        if not running.process.alive():
            return None
        address = f"127.0.0.1:{running.grpc_port}"
        method = PREDICT if target.api == "tfs_grpc" else MODEL_INFER
        server_before = running.process.resources().get("cpu_s", 0.0)
        gen_before = _children_cpu_s()
        try:
            if target.generator == "wrk":
                url = f"{running.process.base_url}/v1/models/{MODEL}:predict"
                result = run_wrk(url, bodies.rest, connections, seconds, config.wrk_threads)
            elif target.generator == "h2load":
                result = run_h2load_grpc(
                    address,
                    method,
                    bodies.framed[target.api],
                    answer_bytes[target.name],
                    connections,
                    seconds,
                    h2load_log,
                )
            else:
                result = run_grpc_load(
                    address, method, bodies.message[target.api], connections, seconds
                )
        except LoadgenError as e:
            problems.append(f"{target.name}: load generator failed at c={connections}: {e}")
            return None
        gen_cpu = _children_cpu_s() - gen_before
        server_cpu = running.process.resources().get("cpu_s", 0.0) - server_before
        if not running.process.alive():
            problems.append(f"{target.server} died under load ({target.name}, c={connections})")
        return result, server_cpu, gen_cpu

    for target in targets:  # warm-up
        one(target, max(config.connections), config.warmup_s)
    for repeat in range(config.repeats):
        order = targets if repeat % 2 == 0 else list(reversed(targets))
        for connections in config.connections:
            for target in order:
                if (measured := one(target, connections, config.duration_s)) is not None:
                    runs[target.name].setdefault(connections, []).append(measured)
    return runs


def _result(
    config: RunConfig,
    raw: raw_ort.RawOrtResult,
    targets: dict[str, dict[str, Any]],
    mlserver_info: dict[str, Any],
    load_at_start: tuple[float, float, float],
    notes: list[str],
    problems: list[str],
) -> SuiteResult:
    medians: dict[str, dict[int, dict[str, Any]]] = {}
    loadgen: dict[str, dict[int, float | None]] = {}
    for name, t in targets.items():
        medians[name], loadgen[name] = {}, {}
        for c, entry in t.get("by_connections", {}).items():
            m = entry["median"]
            medians[name][int(c)] = m
            per_req = [
                cpu / run["requests"] * 1e6
                for cpu, run in zip(entry["loadgen_cpu_s"], entry["runs"], strict=True)
                if run["requests"]
            ]
            loadgen[name][int(c)] = sorted(per_req)[len(per_req) // 2] if per_req else None
            m["loadgen_cpu_us_per_req"] = loadgen[name][int(c)]
            if m["errors"]:
                problems.append(f"{name}: {m['errors']} errors at c={c} (see the JSON)")
    ratios: dict[str, dict[str, Any]] = {}
    for a, b in RATIOS:
        for c in config.connections:
            ma, mb = medians.get(a, {}).get(c), medians.get(b, {}).get(c)
            if ma is None or mb is None:
                continue
            ra = [r["rps"] for r in targets[a]["by_connections"][str(c)]["runs"]]
            rb = [r["rps"] for r in targets[b]["by_connections"][str(c)]["runs"]]
            ratios.setdefault(f"{a}/{b}", {})[str(c)] = {
                "rps": ratio(ma["rps"], mb["rps"]),
                # The two measurements of each repeat ran back to back: their ratio is
                # less disturbed by the machine's drift than the ratio of the medians.
                "rps_per_repeat": [x / y for x, y in zip(ra, rb, strict=False) if y]
                if len(ra) == len(rb)
                else [],
                "p50": ratio(ma["p50_ms"], mb["p50_ms"]),
                "p99": ratio(ma["p99_ms"], mb["p99_ms"]),
                "cpu_per_req": ratio(ma["server_cpu_us_per_req"], mb["server_cpu_us_per_req"]),
                "valid": ma["errors"] == 0 and mb["errors"] == 0,
            }
    top = max(config.connections)
    key = f"{GOAL_PAIR[0]}/{GOAL_PAIR[1]}"
    goal_ratio = ratios.get(key, {}).get(str(top))
    if goal_ratio is None:
        verdict = "NOT MEASURED"
        value = None
    else:
        value = goal_ratio["rps"]
        ok = goal_ratio["valid"] and value is not None and value >= GOAL_RATIO
        verdict = "PASS" if ok else ("INVALID (errors)" if not goal_ratio["valid"] else "FAIL")
    goals: dict[str, dict[str, Any]] = {
        f"{key}_rps_at_c{top}": {
            "value": value,
            "target": GOAL_RATIO,
            "at_least": True,
            "verdict": verdict,
            "per_repeat": [] if goal_ratio is None else goal_ratio["rps_per_repeat"],
        }
    }
    load_now = os.getloadavg()
    data = {
        "model": MODEL,
        "raw_ort": raw.to_json(),
        "h2load": h2load_version(),
        "mlserver": mlserver_info,
        "load_average_at_start": [round(v, 2) for v in load_at_start],
        "load_average_at_end": [round(v, 2) for v in load_now],
        "targets": targets,
        "ratios": ratios,
        "goals": goals,
    }
    main = _main_table(config, medians, raw)
    main.notes = [
        f"load average at start {load_at_start[0]:.2f} {load_at_start[1]:.2f}"
        f" {load_at_start[2]:.2f}, at end {load_now[0]:.2f}",
        *notes,
        *main.notes,
    ]
    ratio_table = Table(
        title="ratios, same run (req/s: higher is better; p50, p99, cpu: lower is better)",
        headers=["pair", "clients", "req/s", "per repeat", "p50", "p99", "server cpu/req"],
    )
    for pair, by_c in ratios.items():
        for c, r in by_c.items():
            per_repeat = "/".join(f"{v:.2f}" for v in r["rps_per_repeat"])
            cells = [fmt(r["rps"], ".2f", "x"), per_repeat or "n/a"]
            cells += [fmt(r[k], ".2f", "x") for k in ("p50", "p99", "cpu_per_req")]
            ratio_table.rows.append(
                [pair, c, *(cells if r["valid"] else [f"({v})" for v in cells])]
            )
    for name, goal in goals.items():
        reached = sum(v >= GOAL_RATIO for v in goal["per_repeat"])
        ratio_table.notes.append(
            f"goal {name} >= {GOAL_RATIO}: {fmt(goal['value'], '.2f', 'x')} {goal['verdict']}"
            f" (reached in {reached} of {len(goal['per_repeat'])} repeats)"
        )
    ratio_table.notes += [
        "req/s: ratio of the medians; per repeat: the ratio of each repeat's two measurements",
        "in parentheses: a side had errors; such a ratio does not count",
    ]
    return SuiteResult(NAME, [main, ratio_table], data, problems)


def _main_table(
    config: RunConfig, medians: dict[str, dict[int, dict[str, Any]]], raw: raw_ort.RawOrtResult
) -> Table:
    table = Table(
        title=(
            f"gRPC / REST single-example predict, {MODEL} (784 floats in, 10 out);"
            f" {config.duration_s:g} s x {config.repeats} repeats, interleaved; medians"
        ),
        headers=[
            "target",
            "generator",
            "clients",
            "req/s",
            "spread",
            "p50 ms",
            "p99 ms",
            "errors",
            "server cpu us/req",
            "loadgen cpu us/req",
        ],
    )
    generator = {t.name: t.generator for t in TARGETS}
    for name, by_c in medians.items():
        for c in config.connections:
            m = by_c.get(c)
            if m is None:
                table.rows.append([name, generator[name], str(c), "n/a", *[""] * 6])
                continue
            table.rows.append(
                [
                    name,
                    generator[name],
                    str(c),
                    f"{m['rps']:,.0f}",
                    fmt(m["rps_spread"], ".0%"),
                    f"{m['p50_ms']:.3f}",
                    f"{m['p99_ms']:.2f}",
                    str(m["errors"]),
                    fmt(m["server_cpu_us_per_req"], ".0f"),
                    fmt(m["loadgen_cpu_us_per_req"], ".0f"),
                ]
            )
    table.notes += [
        f"raw onnxruntime in-process, batch 1: {raw.calls_per_s:,.0f} calls/s"
        f" ({raw.us_per_call:.1f} us/call)",
        "clients: h2load/wrk connections with one call at a time each; the Python generator"
        " (grpc_load.py): that many concurrent calls on one channel",
        "req/s counts successful answers only; errors: failed calls + socket errors, summed",
        "server cpu: the server process group's user+sys per answer (MLServer: main process"
        " + inference worker); loadgen cpu: the load generator's, per call",
    ]
    return table
