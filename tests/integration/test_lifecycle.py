"""Model lifecycle against a real server: hot swaps under load, rollbacks, failed versions,
in-flight requests during unloads, half-written versions, config reloads and labels."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servoir.config.model_config import ModelConfig, read_file
from servoir.core.states import State
from servoir.errors import Code, ServingError
from servoir.frontends.grpc.server import GrpcOptions
from servoir.server import ServerConfig
from servoir.sources.versions import All
from servoir.types import ModelSpec
from tests.integration.harness import RunningServer
from tests.integration.load import ClosedLoop, Outcome
from tests.models import corrupt_version, scale_model, slow_model

ONE = {"instances": [[1.0, 1.0]]}


def factor(outcome: Outcome) -> float:
    return float(outcome.body["predictions"][0]["y"][0])


def publish(base: Path, version: int, build: Callable[[Path], Path]) -> None:
    """Write a version under a staging name, then rename it into place (atomic)."""
    staging = base / f".staging-{version}"
    build(staging)
    os.rename(staging, base / str(version))


def replace_file(path: Path, text: str) -> None:
    """Write `path` atomically (a temporary file renamed over it), as docs/lifecycle.md asks."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(text)
    os.replace(staging, path)


def serve(models: list[ModelConfig], **config: Any) -> RunningServer:
    return RunningServer(
        ServerConfig(
            models=models,
            rest_port=0,
            bind_address="127.0.0.1",
            grpc=GrpcOptions(port=None),
            file_system_poll_wait_seconds=0.05,
            version_quiet_seconds=0.5,
            max_num_load_retries=0,
            **config,
        )
    ).start()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def factory(models: list[ModelConfig], **config: Any) -> RunningServer:
        running = serve(models, **config)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


def polling(factory: Callable[..., RunningServer], config_file: Path) -> RunningServer:
    """A server started from `config_file`, re-reading it every 50 ms."""
    return factory(
        read_file(config_file),
        model_config_file=config_file,
        model_config_file_poll_wait_seconds=0.05,
    )


def states(server: RunningServer, name: str) -> dict[int, State]:
    assert server.server is not None
    manager = server.server.manager
    return server.call(lambda: {s.version: s.state for s in manager.status(name)})  # type: ignore[no-any-return]


def wait_states(server: RunningServer, name: str, expected: dict[int, State]) -> None:
    assert server.server is not None
    manager = server.server.manager
    server.wait_until(lambda: {s.version: s.state for s in manager.status(name)} == expected)


@pytest.mark.parametrize("delete_old", [False, True])
def test_new_version_is_swapped_in_under_load(
    tmp_path: Path, server_factory: Callable[..., RunningServer], delete_old: bool
) -> None:
    base = tmp_path / "m"
    scale_model(base / "1", 1.0)
    server = server_factory([ModelConfig("m", base)])
    with ClosedLoop(server.rest_url + "/v1/models/m:predict", ONE) as load:
        load.wait_for_count(20)
        publish(base, 2, lambda p: scale_model(p, 2.0))
        if delete_old:  # replaced in one step: the old one goes before the new one loaded
            shutil.rmtree(base / "1")
        wait_states(server, "m", {2: State.AVAILABLE, 1: State.END})
        load.wait_for(lambda outcomes: any(factor(o) == 2.0 for o in outcomes[-4:]))
        load.wait_for_count(20)
    assert load.failures() == []
    seen = [factor(o) for o in load.outcomes]
    assert seen[0] == 1.0 and seen[-1] == 2.0
    # once a response came from version 2, no later one came from version 1... per thread
    # ordering is not global, so check the tail only
    assert set(seen[-8:]) == {2.0}


def test_deleting_the_newest_version_rolls_back_under_load(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    base = tmp_path / "m"
    scale_model(base / "1", 1.0)
    scale_model(base / "2", 2.0)
    server = server_factory([ModelConfig("m", base)])
    with ClosedLoop(server.rest_url + "/v1/models/m:predict", ONE) as load:
        load.wait_for_count(20)
        shutil.rmtree(base / "2")
        wait_states(server, "m", {2: State.END, 1: State.AVAILABLE})
        load.wait_for_count(20)
    assert load.failures() == []
    assert factor(load.outcomes[0]) == 2.0 and factor(load.outcomes[-1]) == 1.0


def test_corrupt_version_ends_and_older_keeps_serving(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    base = tmp_path / "m"
    scale_model(base / "1", 1.0)
    server = server_factory([ModelConfig("m", base)])
    with ClosedLoop(server.rest_url + "/v1/models/m:predict", ONE) as load:
        load.wait_for_count(10)
        staging = tmp_path / "stage"
        corrupt_version(staging, 2)
        os.rename(staging / "2", base / "2")
        wait_states(server, "m", {2: State.END, 1: State.AVAILABLE})
        load.wait_for_count(10)
    assert load.failures() == []
    status = httpx.get(server.rest_url + "/v1/models/m").json()["model_version_status"]
    assert status[0]["version"] == "2" and status[0]["state"] == "END"
    assert "Failed to load version 2 of model m" in status[0]["status"]["error_message"]


def test_in_flight_requests_finish_on_an_unloading_version(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    base = tmp_path / "slow"
    slow_model(base / "1", rows=2048)
    slow_model(base / "2", rows=2048)
    server = server_factory([ModelConfig("slow", base)])
    assert server.server is not None
    manager = server.server.manager
    harness = manager.serving_map.models["slow"].available[2]
    results: list[int] = []
    body = {"instances": [[0.1] * 512]}

    def request() -> None:
        r = httpx.post(server.rest_url + "/v1/models/slow:predict", json=body, timeout=60)
        results.append(r.status_code)

    release = asyncio.Event()

    # Hold a handle on version 2 from the server's loop, as an in-flight request does, so the
    # version cannot finish unloading before the HTTP requests below are in flight too.
    async def hold() -> None:
        async with manager.handle(ModelSpec("slow", 2)):
            await release.wait()

    held = server.submit(hold())
    server.poll_until(lambda: harness.refs >= 1)
    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    server.poll_until(lambda: harness.refs >= 3)  # HTTP requests are in flight on version 2
    shutil.rmtree(base / "2")
    wait_states(server, "slow", {2: State.UNLOADING, 1: State.AVAILABLE})
    server.call(release.set)
    held.result(30)
    for t in threads:
        t.join(60)
    wait_states(server, "slow", {2: State.END, 1: State.AVAILABLE})
    assert results == [200, 200, 200, 200]


def test_half_written_version_is_not_loaded(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    base = tmp_path / "m"
    scale_model(base / "1", 1.0)
    whole = scale_model(tmp_path / "whole", 3.0) / "model.onnx"
    data = whole.read_bytes()
    server = server_factory([ModelConfig("m", base)])
    assert server.server is not None
    repository = server.server.repository
    (base / "3").mkdir()
    target = base / "3" / "model.onnx"
    chunk = len(data) // 4 + 1
    for i in range(4):
        with target.open("ab") as f:
            f.write(data[i * chunk : (i + 1) * chunk])
            f.flush()
        # let the source scan the directory twice between writes: it must not load it
        scans = repository.scans
        server.poll_until(lambda s=scans: repository.scans >= s + 2)
        if i < 3:
            assert 3 not in states(server, "m")
    wait_states(server, "m", {3: State.AVAILABLE, 1: State.END})
    r = httpx.post(server.rest_url + "/v1/models/m:predict", json=ONE)
    assert r.json()["predictions"][0]["y"] == [3.0, 3.0]


CONFIG = """
model_config_list {{
  config {{ name: "a" base_path: "{a}" model_version_policy {{ all {{}} }}
            version_labels {{ key: "stable" value: {stable} }} }}
  config {{ name: "{other}" base_path: "{other_path}" }}
}}
"""


def test_config_file_poll_adds_removes_and_moves_labels(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a" / "1", 1.0)
    scale_model(tmp_path / "a" / "2", 2.0)
    scale_model(tmp_path / "b" / "1", 10.0)
    scale_model(tmp_path / "c" / "1", 100.0)
    config_file = tmp_path / "models.config"

    def write(stable: int, other: str) -> None:
        text = CONFIG.format(
            a=tmp_path / "a", stable=stable, other=other, other_path=tmp_path / other
        )
        replace_file(config_file, text)

    write(1, "b")
    server = polling(server_factory, config_file)
    assert server.server is not None
    manager = server.server.manager
    url = server.rest_url + "/v1/models/a/labels/stable:predict"
    with ClosedLoop(url, ONE) as load:
        load.wait_for_count(10)
        assert factor(load.outcomes[-1]) == 1.0
        write(2, "c")
        server.wait_until(
            lambda: manager.model_names() == ["a", "c"] and manager.labels("a") == {"stable": 2}
        )
        load.wait_for(lambda outcomes: factor(outcomes[-1]) == 2.0)
    assert load.failures() == []
    assert httpx.post(server.rest_url + "/v1/models/c:predict", json=ONE).status_code == 200
    gone = httpx.post(server.rest_url + "/v1/models/b:predict", json=ONE)
    assert gone.status_code == 404


def test_reload_and_label_rules(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a" / "1", 1.0)
    scale_model(tmp_path / "a" / "2", 2.0)
    config = ModelConfig("a", tmp_path / "a", policy=All(), labels={"stable": 1})
    server = server_factory([config])
    assert server.server is not None
    repository = server.server.repository
    manager = server.server.manager

    def reload(configs: list[ModelConfig]) -> ServingError | None:
        async def run() -> ServingError | None:
            try:
                await repository.apply(configs)
            except ServingError as e:
                return e
            return None

        result: ServingError | None = server.run(run())
        return result

    assert server.call(lambda: manager.labels("a")) == {"stable": 1}
    # a label may not point at a version that is not available; the old labels stay
    error = reload([ModelConfig("a", tmp_path / "a", policy=All(), labels={"stable": 7})])
    assert error is not None and error.code is Code.FAILED_PRECONDITION
    assert "version 7 of model a" in error.message
    assert server.call(lambda: manager.labels("a")) == {"stable": 1}
    # a new model whose versions all fail is reported, the others keep serving
    corrupt_version(tmp_path / "bad", 1)
    error = reload([config, ModelConfig("bad", tmp_path / "bad")])
    assert error is not None and error.code is Code.UNKNOWN
    assert error.message.startswith("1 model(s) did not become available: {{name: bad version: 1}")
    r = httpx.post(server.rest_url + "/v1/models/a/labels/stable:predict", json=ONE)
    assert r.json()["predictions"][0]["y"] == [1.0, 1.0]


def test_a_refused_reload_changes_nothing(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a" / "1", 1.0)
    scale_model(tmp_path / "a" / "2", 2.0)
    scale_model(tmp_path / "b" / "1", 10.0)
    a = ModelConfig("a", tmp_path / "a", policy=All(), labels={"stable": 1})
    server = server_factory([a, ModelConfig("b", tmp_path / "b")])
    assert server.server is not None
    repository, manager = server.server.repository, server.server.manager

    async def reload() -> ServingError:
        # a's policy changes and b goes, but the label names a version a will never have
        with pytest.raises(ServingError) as caught:
            await repository.apply([ModelConfig("a", tmp_path / "a", labels={"stable": 9})])
        return caught.value

    error = server.run(reload())
    assert error.code is Code.FAILED_PRECONDITION and "version 9 of model a" in error.message
    assert server.call(lambda: manager.model_names()) == ["a", "b"]
    assert states(server, "a") == {2: State.AVAILABLE, 1: State.AVAILABLE}
    r = httpx.post(server.rest_url + "/v1/models/a/labels/stable:predict", json=ONE)
    assert r.json()["predictions"][0]["y"] == [1.0, 1.0]
    assert httpx.post(server.rest_url + "/v1/models/b:predict", json=ONE).status_code == 200


def test_moving_a_model_to_another_base_path_fails_no_request(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a1" / "1", 1.0)
    scale_model(tmp_path / "a2" / "4", 4.0)  # just written: taken as it is, as at start-up
    server = server_factory([ModelConfig("a", tmp_path / "a1")])
    assert server.server is not None
    repository = server.server.repository
    with ClosedLoop(server.rest_url + "/v1/models/a:predict", ONE) as load:
        load.wait_for_count(20)
        server.run(repository.apply([ModelConfig("a", tmp_path / "a2")]))  # no error
        assert states(server, "a")[4] is State.AVAILABLE
        load.wait_for(lambda outcomes: factor(outcomes[-1]) == 4.0)
    assert load.failures() == []


def test_a_refused_config_file_is_tried_again_at_the_next_polls(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a" / "1", 1.0)
    config_file = tmp_path / "models.config"
    text = (
        'model_config_list {{ config {{ name: "a" base_path: "{a}" '
        "model_version_policy {{ latest {{ num_versions: 2 }} }} {labels} }} }}"
    )
    stable = 'version_labels { key: "stable" value: 1 }'
    config_file.write_text(text.format(a=tmp_path / "a", labels=stable))
    server = polling(server_factory, config_file)
    assert server.server is not None
    manager = server.server.manager
    canary = stable + ' version_labels { key: "canary" value: 2 }'
    replace_file(config_file, text.format(a=tmp_path / "a", labels=canary))  # refused: no 2 yet
    publish(tmp_path / "a", 2, lambda p: scale_model(p, 2.0))
    # Once version 2 is AVAILABLE, a later poll of the unchanged file assigns the label.
    server.wait_until(lambda: manager.labels("a") == {"stable": 1, "canary": 2})
    r = httpx.post(server.rest_url + "/v1/models/a/labels/canary:predict", json=ONE)
    assert r.json()["predictions"][0]["y"] == [2.0, 2.0]


def test_a_label_moves_before_the_version_it_left_unloads(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    scale_model(tmp_path / "a" / "1", 1.0)
    scale_model(tmp_path / "a" / "2", 2.0)
    before = ModelConfig("a", tmp_path / "a", policy=All(), labels={"stable": 1})
    server = server_factory([before])
    assert server.server is not None
    repository = server.server.repository
    url = server.rest_url + "/v1/models/a/labels/stable:predict"
    with ClosedLoop(url, ONE) as load:
        load.wait_for_count(20)
        # One reload moves the label to 2 and drops version 1 (latest only).
        server.run(repository.apply([ModelConfig("a", tmp_path / "a", labels={"stable": 2})]))
        wait_states(server, "a", {2: State.AVAILABLE, 1: State.END})
        load.wait_for_count(20)
        server.run(repository.apply([before]))  # and back: 1 loads again, the label follows
        wait_states(server, "a", {2: State.AVAILABLE, 1: State.AVAILABLE})
        load.wait_for(lambda outcomes: factor(outcomes[-1]) == 1.0)
    assert load.failures() == []
