"""Shared by the batching suite: Servoir targets that differ only in their batching flags,
started together and measured side by side (interleaved, medians over repeats).

Every target of a comparison runs for the whole comparison; at each connection count the
targets take turns (A B C, then C B A on the next repeat), so drift on a noisy machine hits
them alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.core import RunConfig
from benchmarks.loadgen import LUA_POST_JSON, LoadgenError, WrkResult, run_wrk
from benchmarks.servers import ServerError, ServerProcess, ServerSpec, servoir_spec
from benchmarks.stats import summarize

LUA_POST_JSON_MIX = LUA_POST_JSON.parent / "post_json_mix.lua"  # cycles through many bodies
# Every target logs warnings only: an access log line per request would dominate a small
# model's cost and hide what batching changes.
QUIET = " --log_level=warning --access_log=false"


@dataclass(frozen=True)
class Target:
    name: str
    flags: str  # extra `servoir serve` flags (batching on or off, and its settings)
    # Another server (a peer), with its own request bodies for its own protocol.
    peer: ServerSpec | None = None
    body_file: Path | None = None

    def spec(self, model: str, base_path: Path) -> ServerSpec:
        if self.peer is not None:
            return self.peer
        base = servoir_spec(model)  # honours SERVOIR_BENCH_COMMAND
        command = base.command + QUIET + (f" {self.flags}" if self.flags else "")
        return ServerSpec(self.name, command, model, base_path, ready_marker=b"AVAILABLE")


@dataclass
class Comparison:
    """Targets measured side by side; results keyed by target, then connection count."""

    targets: list[Target]
    model: str
    base_path: Path
    connections: tuple[int, ...]
    body_file: Path
    script: Path = LUA_POST_JSON
    medians: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (string keys): per target, per connection count, median and runs."""
        return {
            name: {
                "command": self.commands.get(name),
                "by_connections": {
                    str(c): {"median": m, "runs": self.runs[name][c]}
                    for c, m in self.medians.get(name, {}).items()
                },
            }
            for name in (t.name for t in self.targets)
        }


# A problem with the target's answer, or None.
Check = Callable[[ServerProcess, Target], str | None]


def measure(
    config: RunConfig, comparison: Comparison, logs: Path, check: Check, problems: list[str]
) -> None:
    """Start every target, check one answer from each, then measure them interleaved."""
    with contextlib.ExitStack() as stack:
        live: dict[str, ServerProcess] = {}
        for target in comparison.targets:
            server = ServerProcess(target.spec(comparison.model, comparison.base_path), logs)
            try:
                stack.enter_context(server)
            except ServerError as exc:
                problems.append(f"{target.name} did not start: {exc}")
                continue
            comparison.commands[target.name] = server.spec.argv(server.port)
            if (problem := check(server, target)) is not None:
                problems.append(f"{target.name}: {problem}")
                continue
            live[target.name] = server
        _interleave(config, comparison, live, problems)


def _interleave(
    config: RunConfig,
    comparison: Comparison,
    live: dict[str, ServerProcess],
    problems: list[str],
) -> None:
    results: dict[str, dict[int, list[WrkResult]]] = {
        n: {c: [] for c in comparison.connections} for n in live
    }
    cpu: dict[str, dict[int, list[float]]] = {
        n: {c: [] for c in comparison.connections} for n in live
    }

    bodies = {t.name: t.body_file or comparison.body_file for t in comparison.targets}

    def one(name: str, connections: int, duration_s: float) -> tuple[WrkResult, float] | None:
        server = live[name]
        before = server.resources().get("cpu_s", 0.0)
        try:
            result = run_wrk(
                server.base_url + server.spec.predict_path,
                bodies[name],
                connections=connections,
                duration_s=duration_s,
                threads=config.wrk_threads,
                timeout_s=30.0,
                script=comparison.script,
            )
        except LoadgenError as exc:
            problems.append(f"{name}: wrk failed at c={connections}: {exc}")
            return None
        if not server.alive():
            problems.append(f"{name} died under load at c={connections}:\n{server.log_tail()}")
            del live[name]
            return None
        return result, server.resources().get("cpu_s", 0.0) - before

    for name in list(live):  # warm up caches, pools and allocators at the highest load
        one(name, max(comparison.connections), config.warmup_s)
    for repeat in range(config.repeats):
        order = list(live) if repeat % 2 == 0 else list(reversed(live))
        for connections in comparison.connections:
            for name in order:
                if name in live and (measured := one(name, connections, config.duration_s)):
                    results[name][connections].append(measured[0])
                    cpu[name][connections].append(measured[1])
    for name, by_c in results.items():
        comparison.medians[name] = {}
        comparison.runs[name] = {}
        for c, runs in by_c.items():
            if not runs:
                continue
            median = summarize(runs, cpu[name][c])
            comparison.medians[name][c] = median
            comparison.runs[name][c] = [r.to_json() for r in runs]
            if median["errors"] > 0:
                problems.append(f"{name}: {median['errors']} errors at c={c}")


def write_params(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
