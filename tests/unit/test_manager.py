"""The manager against fake loaders: states, swaps, failures, handles and history."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from servoir.core.manager import AspiredVersion, Manager, Transition
from servoir.core.states import State
from servoir.errors import ServingError
from servoir.types import ModelSpec
from tests.fakes import FakeLoader, FakeServable


def run(test: Callable[[Manager], Awaitable[None]]) -> None:
    async def main() -> None:
        with ThreadPoolExecutor(4) as executor:
            manager = Manager(executor, end_history=3, max_load_retries=0)
            await asyncio.wait_for(test(manager), timeout=20)

    asyncio.run(main())


def states(manager: Manager, name: str = "m") -> dict[int, State]:
    return {s.version: s.state for s in manager.status(name)}


def aspire(manager: Manager, *loaders: FakeLoader) -> None:
    manager.set_aspired("m", [AspiredVersion(ld.version, ld) for ld in loaders])


def test_loads_and_serves_latest() -> None:
    async def test(manager: Manager) -> None:
        aspire(manager, FakeLoader(1), FakeLoader(2))
        await manager.wait_until(lambda: manager.settled(["m"]))
        assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}
        assert manager.handle(ModelSpec("m")).id.version == 2
        assert manager.handle(ModelSpec("m", 1)).id.version == 1

    run(test)


def test_label_and_removal_changes_wake_waiters() -> None:
    # No transition announces a label move or a removal; waiters must still wake.
    async def test(manager: Manager) -> None:
        aspire(manager, FakeLoader(1), FakeLoader(2))
        await manager.wait_until(lambda: manager.settled(["m"]))
        moved = asyncio.ensure_future(manager.wait_until(lambda: manager.labels("m") == {"a": 2}))
        await asyncio.sleep(0)  # the waiter is parked before the change
        manager.set_labels("m", {"a": 2})
        await asyncio.wait_for(moved, timeout=5)
        gone = asyncio.ensure_future(manager.wait_until(lambda: manager.model_names() == []))
        await asyncio.sleep(0)
        manager.remove_model("m")
        await asyncio.wait_for(gone, timeout=5)

    run(test)


def test_swap_keeps_old_version_until_new_is_available() -> None:
    async def test(manager: Manager) -> None:
        aspire(manager, FakeLoader(1))
        await manager.wait_until(lambda: manager.settled(["m"]))
        new = FakeLoader(2, gated=True)
        aspire(manager, new)
        await manager.wait_until(lambda: states(manager).get(2) is State.LOADING)
        # while version 2 loads, version 1 still serves
        assert manager.handle(ModelSpec("m")).id.version == 1
        new.gate.set()
        await manager.wait_until(lambda: states(manager) == {2: State.AVAILABLE, 1: State.END})
        assert manager.handle(ModelSpec("m")).id.version == 2

    run(test)


def test_failed_version_ends_with_error_and_old_one_keeps_serving() -> None:
    async def test(manager: Manager) -> None:
        aspire(manager, FakeLoader(1))
        await manager.wait_until(lambda: manager.settled(["m"]))
        aspire(manager, FakeLoader(2, fail=True))
        await manager.wait_until(lambda: states(manager).get(2) is State.END)
        status = {s.version: s for s in manager.status("m")}
        assert status[2].error is not None
        assert status[2].error.message == "version 2 is corrupt"
        assert status[1].state is State.AVAILABLE
        assert manager.handle(ModelSpec("m")).id.version == 1

    run(test)


def test_unload_waits_for_handles() -> None:
    async def test(manager: Manager) -> None:
        first = FakeLoader(1)
        aspire(manager, first)
        await manager.wait_until(lambda: manager.settled(["m"]))
        async with manager.handle(ModelSpec("m")) as handle:
            aspire(manager, FakeLoader(2))
            await manager.wait_until(lambda: states(manager).get(1) is State.UNLOADING)
            # no new request can reach version 1, but this one still holds it
            assert manager.handle(ModelSpec("m")).id.version == 2
            assert first.servable is not None
            assert not first.servable.closed.is_set()
            assert handle.servable is first.servable
        await manager.wait_until(lambda: states(manager).get(1) is State.END)
        assert first.servable.closed.is_set()

    run(test)


def test_removing_every_version_unloads_all_and_history_is_bounded() -> None:
    async def test(manager: Manager) -> None:
        events: list[Transition] = []
        manager.add_listener(events.append)
        for version in range(1, 7):
            aspire(manager, FakeLoader(version))
            await manager.wait_until(lambda v=version: states(manager).get(v) is State.AVAILABLE)
        manager.set_aspired("m", [])
        await manager.wait_until(lambda: all(s is State.END for s in states(manager).values()))
        assert list(states(manager)) == [6, 5, 4]  # only the last 3 END versions are kept
        with pytest.raises(ServingError):
            manager.handle(ModelSpec("m"))
        loaded = [e for e in events if e.state is State.AVAILABLE]
        assert [e.id.version for e in loaded] == [1, 2, 3, 4, 5, 6]
        assert all(e.seconds is not None for e in loaded)

    run(test)


def test_a_version_unloaded_twice_is_listed_once() -> None:
    async def test(manager: Manager) -> None:
        for _ in range(3):  # load, unload, load again ... (model control, config reloads)
            aspire(manager, FakeLoader(1))
            await manager.wait_until(lambda: states(manager) == {1: State.AVAILABLE})
            manager.set_aspired("m", [])
            await manager.wait_until(lambda: states(manager) == {1: State.END})
        assert [s.version for s in manager.status("m")] == [1]

    run(test)


def test_proposed_labels_move_together_once_their_versions_are_available() -> None:
    async def test(manager: Manager) -> None:
        aspire(manager, FakeLoader(1))
        await manager.wait_until(lambda: states(manager) == {1: State.AVAILABLE})
        manager.set_labels("m", {"stable": 1})
        gated = FakeLoader(2, gated=True)
        aspire(manager, FakeLoader(1), gated)
        manager.propose_labels("m", {"stable": 2, "canary": 2})
        assert manager.labels("m") == {"stable": 1}  # 2 is still loading
        gated.gate.set()
        await manager.wait_until(lambda: manager.labels("m") == {"stable": 2, "canary": 2})
        manager.propose_labels("m", {"stable": 7})
        manager.propose_labels("m", None)  # withdrawn: a refused reload
        assert manager.labels("m") == {"stable": 2, "canary": 2}

    run(test)


def test_stop_unloads_everything() -> None:
    async def test(manager: Manager) -> None:
        loader = FakeLoader(1)
        aspire(manager, loader)
        await manager.wait_until(lambda: manager.settled(["m"]))
        await manager.stop()
        assert loader.servable is not None and loader.servable.closed.is_set()

    run(test)


def test_failed_load_is_retried() -> None:
    class FlakyLoader(FakeLoader):
        def __init__(self) -> None:
            super().__init__(1, fail=True)
            self.attempts = 0

        def load(self) -> FakeServable:
            self.attempts += 1
            self.fail = self.attempts < 3
            return super().load()

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            manager = Manager(executor, max_load_retries=2, load_retry_interval_s=0.001)
            loader = FlakyLoader()
            manager.set_aspired("m", [AspiredVersion(1, loader)])
            await manager.wait_until(lambda: manager.settled(["m"]))
            assert states(manager) == {1: State.AVAILABLE}
            assert loader.attempts == 3
            gives_up = FakeLoader(2, fail=True)
            manager.set_aspired("m", [AspiredVersion(2, gives_up)])
            await manager.wait_until(lambda: states(manager).get(2) is State.END)

    asyncio.run(asyncio.wait_for(main(), 20))
