"""Command line: pick suites, run them, print tables, write benchmarks/results/<name>.json."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from datetime import datetime

from benchmarks.core import RESULTS_DIR, RunConfig, SuiteResult
from benchmarks.report import (
    build_document,
    describe_machine,
    machine_info,
    print_suite,
    write_json,
)
from benchmarks.suites import SUITES


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Run Servoir's benchmark suites; print a table and write JSON results.",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per measurement instead of 10 s")
    parser.add_argument(
        "--only",
        action="append",
        type=_csv,
        metavar="SUITE[,SUITE]",
        help=f"suites to run (default: all): {', '.join(SUITES)}",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="measurements per point; median reported"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds per measurement (overrides --quick)"
    )
    parser.add_argument(
        "--connections", type=_csv, help="e.g. 1,8,32 (default: 1,8,32; batching: its own)"
    )
    parser.add_argument("--targets", type=_csv, help="only these targets, e.g. fastapi_baseline")
    parser.add_argument("--name", help="result file name (default: <suites>-<timestamp>)")
    parser.add_argument("--list", action="store_true", help="list suites and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(SUITES))
        return 0
    selected = [s for group in args.only for s in group] if args.only else list(SUITES)
    unknown = [s for s in selected if s not in SUITES]
    if unknown:
        print(
            f"unknown suite(s): {', '.join(unknown)}; known: {', '.join(SUITES)}", file=sys.stderr
        )
        return 2
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    config = RunConfig(
        duration_s=duration,
        warmup_s=1.0 if args.quick else 2.0,
        repeats=max(1, args.repeats),
        connections=tuple(int(c) for c in args.connections or RunConfig.connections),
        connections_given=args.connections is not None,
        targets=tuple(args.targets) if args.targets else None,
    )
    name = args.name or f"{'+'.join(selected)}-{datetime.now():%Y%m%d-%H%M%S}"
    command = shlex.join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])

    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    results: list[SuiteResult] = []
    for suite in selected:
        print(f"\n== suite {suite} ...", flush=True)
        result = SUITES[suite](config)
        print_suite(result)
        results.append(result)

    config_json = {**asdict(config), "work_dir": str(config.work_dir), "quick": args.quick}
    document = build_document(name, command, config_json, machine, results)
    for path in (RESULTS_DIR / f"{name}.json", RESULTS_DIR / "latest.json"):
        write_json(path, document)
    print(f"\nwrote {RESULTS_DIR / f'{name}.json'}")
    if not document["ok"]:
        print("run has problems (see above); its numbers are not valid", file=sys.stderr)
        return 1
    return 0
