"""The batching suite's BERT plot: throughput and p99 latency against concurrency, per
workload and target, with raw onnxruntime's rate and the machine's ceiling as lines.
matplotlib is optional (the `bench` extra); without it the plot is skipped and the suite
says so.

Re-draw from a results file: python -m benchmarks.batching_plot results/<name>.json out.png
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

# workload -> target -> connections -> median summary (benchmarks.stats.summarize)
Medians = dict[str, dict[str, dict[int, dict[str, Any]]]]


def plot_bert(
    medians: Medians,
    raw: dict[str, float | None],
    path: Path,
    ceiling: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return {"written": None, "reason": "matplotlib is not installed"}
    workloads = list(medians)
    figure, axes = plt.subplots(2, len(workloads), figsize=(5.5 * len(workloads), 7), squeeze=False)
    for column, workload in enumerate(workloads):
        rate_axis, tail_axis = axes[0][column], axes[1][column]
        ticks: set[int] = set()
        for name, by_c in medians[workload].items():
            conns = sorted(c for c in by_c if by_c[c]["requests"] > 0)  # no answer: no point
            ticks.update(conns)
            rate_axis.plot(conns, [by_c[c]["rps"] for c in conns], marker="o", label=name)
            tail_axis.plot(conns, [by_c[c]["p99_ms"] for c in conns], marker="o", label=name)
        if (rate := raw.get(workload)) is not None:
            rate_axis.axhline(rate, color="grey", linestyle="--", label="raw onnxruntime, batch 1")
        if (top := (ceiling or {}).get(workload)) is not None:
            rate_axis.axhline(top, color="black", linestyle=":", label="ceiling (a session a core)")
        rate_axis.set_title(f"MiniLM, {workload} lengths: throughput")
        rate_axis.set_ylabel("sentences / s")
        tail_axis.set_title(f"MiniLM, {workload} lengths: p99 latency")
        tail_axis.set_ylabel("p99 ms")
        for axis in (rate_axis, tail_axis):
            axis.set_xscale("log", base=2)
            axis.set_xticks(sorted(ticks), [str(c) for c in sorted(ticks)])
            axis.set_xlabel("concurrent clients")
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return {"written": str(path)}


def from_results(
    document: dict[str, Any],
) -> tuple[Medians, dict[str, float | None], dict[str, float | None]]:
    """The plot's data from a results document written by `benchmarks/run.py`."""
    bert = document["suites"]["batching"]["bert"]
    medians: Medians = {}
    raw: dict[str, float | None] = {}
    ceiling: dict[str, float | None] = {}
    for workload, entry in bert["workloads"].items():
        raw[workload] = entry["raw_ort_sentences_per_s"]
        ceiling[workload] = (entry.get("ceiling") or {}).get("best")
        medians[workload] = {
            target: {int(c): m["median"] for c, m in t["by_connections"].items()}
            for target, t in entry["targets"].items()
        }
    return medians, raw, ceiling


def main(argv: list[str]) -> int:
    medians, raw, ceiling = from_results(orjson.loads(Path(argv[0]).read_bytes()))
    print(plot_bert(medians, raw, Path(argv[1]), ceiling))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
