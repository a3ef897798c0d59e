"""Fixtures for the operator tests: the Kubernetes emulator, a client for it, the operator process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kmock
import pytest
from chatterbox_operator.schema import GROUP, KINDS, VERSION
from kube_emulator import KubeEmulator
from operator_harness import TEST_AGENT, Client, OperatorProcess, running_operator


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    async with KubeEmulator() as cluster, kmock.Server(cluster):
        cluster.resources.load_bundled()
        for kind in KINDS:
            cluster.resources[f"{GROUP}/{VERSION}/{kind.plural}"] = kmock.ResourceInfo(
                kind=kind.kind,
                singular=kind.singular,
                namespaced=True,
                subresources={"status", "scale"} if kind.scale else {"status"},
                verbs={"get", "list", "watch", "create", "patch", "delete"},
            )
        yield cluster


@pytest.fixture
async def client(emulator: KubeEmulator) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(headers={"User-Agent": TEST_AGENT}) as session:
        yield Client(session, str(emulator.url).rstrip("/"))


@pytest.fixture
async def operator(emulator: KubeEmulator, tmp_path: Path) -> AsyncIterator[OperatorProcess]:
    """The operator as deployed by default: all namespaces, standalone."""
    async with running_operator(emulator, tmp_path) as handle:
        yield handle


@pytest.fixture(scope="module")
def rbac_calls_seen() -> set[tuple[str, str, str]]:
    """Operator API calls seen by all end-to-end tests of a module, to check the RBAC table is exact."""
    return set()
