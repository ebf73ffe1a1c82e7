"""Fixtures shared by the integration modules: each module starts its own `server`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import RunningServer


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """A REST client of the module's server (a module may define its own instead)."""
    with httpx.Client(base_url=server.rest_url, timeout=30) as c:
        yield c
