"""The file-system source over real directories, with a controlled clock: what it aspires
while versions are written, replaced and moved."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from servoir.sources.filesystem import FileSystemSource, ModelSource, VersionPath

QUIET_S = 2.0


class Scans:
    """A source for one model `m`, its clock moved by hand; records every emission."""

    def __init__(self, base: Path) -> None:
        self.emitted: list[list[int]] = []
        self.offset_ns = 0
        self.source = FileSystemSource(
            [ModelSource("m", base)],
            self._aspired,
            lambda model, message: None,
            quiet_seconds=QUIET_S,
            wall_clock_ns=lambda: time.time_ns() + self.offset_ns,
        )

    def _aspired(self, model: ModelSource, versions: Sequence[VersionPath]) -> None:
        self.emitted.append(sorted(v.version for v in versions))

    def scan(self, later_s: float = 0.0) -> list[int]:
        self.offset_ns += int(later_s * 1e9)
        self.source.poll_once()
        return self.emitted[-1]


def version(base: Path, number: int) -> Path:
    path = base / str(number)
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"weights")
    return path


def test_a_removed_version_serves_until_its_replacement_is_ready(tmp_path: Path) -> None:
    version(tmp_path, 1)
    scans = Scans(tmp_path)
    assert scans.scan() == [1]
    version(tmp_path, 2)  # the new version is written ...
    shutil.rmtree(tmp_path / "1")  # ... and the old one deleted at once
    assert scans.scan() == [1]  # 2 is not finished yet: 1 keeps serving
    assert scans.scan(QUIET_S) == [2]  # 2 is quiet and unchanged: it replaces 1
    assert scans.scan() == [2]


def test_a_removed_version_without_replacement_unloads(tmp_path: Path) -> None:
    version(tmp_path, 1)
    version(tmp_path, 2)
    scans = Scans(tmp_path)
    assert scans.scan() == [2]
    shutil.rmtree(tmp_path / "2")  # a rollback: version 1 is there, nothing is pending
    assert scans.scan() == [1]
    shutil.rmtree(tmp_path / "1")
    assert scans.scan() == []


def test_a_new_base_path_is_taken_as_it_is(tmp_path: Path) -> None:
    version(tmp_path / "a1", 1)
    version(tmp_path / "a2", 4)  # written just now: it would be pending at the old path
    scans = Scans(tmp_path / "a1")
    assert scans.scan() == [1]
    scans.source.set_models([ModelSource("m", tmp_path / "a2")])
    assert scans.scan() == [4]  # named by the config, like a version found at start-up


def test_a_version_still_being_written_waits(tmp_path: Path) -> None:
    version(tmp_path, 1)
    scans = Scans(tmp_path)
    assert scans.scan() == [1]
    version(tmp_path, 2)
    assert scans.scan() == [1]
    assert scans.scan() == [1]  # unchanged, but written less than QUIET_S ago
    assert scans.scan(QUIET_S) == [2]
