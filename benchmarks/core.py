"""Shared types: what a suite is given, and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
EXAMPLE_MODELS = REPO_ROOT / "examples" / "models"


@dataclass(frozen=True)
class RunConfig:
    """Knobs every suite reads; set by the command line."""

    duration_s: float = 10.0
    warmup_s: float = 2.0
    repeats: int = 3
    connections: tuple[int, ...] = (1, 8, 32)
    # --connections was given: suites with their own default points use these instead.
    connections_given: bool = False
    wrk_threads: int = 1
    targets: tuple[str, ...] | None = None  # None: every target the suite knows
    work_dir: Path = RESULTS_DIR

    def points(self, default: tuple[int, ...]) -> tuple[int, ...]:
        """The connection counts to measure: --connections when given, else `default`."""
        return self.connections if self.connections_given else default


@dataclass
class Table:
    """A table to print: a title, column headers and rows of already formatted cells."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SuiteResult:
    """What a suite returns: tables for people, `data` for the JSON file."""

    name: str
    tables: list[Table]
    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # errors that make the run invalid

    @property
    def ok(self) -> bool:
        return not self.problems
