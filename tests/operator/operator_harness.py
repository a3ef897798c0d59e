"""Helpers for the operator tests: a client for the emulator, polling, the operator process, its API calls.

(A uniquely named module: test directories without __init__.py share one `conftest` module name.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yaml
from chatterbox_operator import resources as r
from kube_emulator import APPLY_PATCH, KubeEmulator

TEST_AGENT = "chatterbox-e2e-test"
NAMESPACE = "speech"


class Client:
    """The test's own API client (a distinct User-Agent keeps its calls out of the RBAC check)."""

    def __init__(self, session: aiohttp.ClientSession, server: str) -> None:
        self.session = session
        self.server = server

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self.session.request(method, self.server + path, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                raise AssertionError(f"{method} {path} -> {response.status}: {payload}")
            return payload

    async def create(self, resource: r.Resource, body: dict[str, Any], namespace: str = NAMESPACE) -> dict:
        return await self.call("POST", resource.path(namespace), body)

    async def get(self, resource: r.Resource, name: str, namespace: str = NAMESPACE) -> dict | None:
        async with self.session.get(self.server + resource.path(namespace, name)) as response:
            return None if response.status == 404 else await response.json()

    async def patch(
        self,
        resource: r.Resource,
        name: str,
        body: Any,
        subresource: str | None = None,
        namespace: str = NAMESPACE,
    ) -> dict:
        path = resource.path(namespace, name, subresource)
        return await self.call("PATCH", path, body, "application/merge-patch+json")

    async def delete(self, resource: r.Resource, name: str, namespace: str = NAMESPACE) -> dict:
        return await self.call("DELETE", resource.path(namespace, name))


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy (which is returned) or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def register_service_monitors(cluster: KubeEmulator) -> None:
    """Make the Prometheus Operator's ServiceMonitor CRD 'installed'."""
    resource = r.SERVICE_MONITORS
    cluster.resources[f"{resource.group}/{resource.version}/{resource.plural}"] = kmock.ResourceInfo(
        kind=resource.kind,
        singular="servicemonitor",
        namespaced=True,
        verbs={"get", "list", "watch", "create"},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text()


@contextlib.asynccontextmanager
async def running_operator(
    emulator: KubeEmulator, workdir: Path, *args: str
) -> AsyncIterator[OperatorProcess]:
    """`python -m chatterbox_operator ARGS` against the emulator, with a short resync period."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url).rstrip("/")}}],
                "users": [{"name": "operator", "user": {"token": "e2e"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "operator"}}],
                "current-context": "emulator",
            }
        )
    )
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "CHATTERBOX_OPERATOR_RESYNC_SECONDS": "0.5"}
    log = workdir / "operator.log"
    command = [
        sys.executable,
        "-m",
        "chatterbox_operator",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        *args,
    ]
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    handle = OperatorProcess(process, log)

    async def alive() -> bool:
        assert process.poll() is None, f"operator exited early:\n{handle.output}"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await eventually(alive, timeout=30, what="the operator's liveness endpoint")
        yield handle
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


def operator_calls(cluster: KubeEmulator) -> set[tuple[str, str, str]]:
    """(group, resource[/subresource], verb) of every API request the operator process sent."""
    verbs = {
        "LIST": "list",
        "WATCH": "watch",
        "FETCH": "get",
        "CREATE": "create",
        "UPDATE": "patch",
        "DELETE": "delete",
    }
    calls = set()
    for request in list(cluster):
        if (
            request.headers.get("User-Agent") == TEST_AGENT
            or request.resource is None
            or request.action is None
        ):
            continue
        if request.resource.plural is None:
            continue  # API discovery, allowed to every authenticated client
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        verb = verbs[request.action.name]
        calls.add((request.resource.group or "", resource, verb))
        if verb == "patch" and request.headers.get("Content-Type", "").startswith(APPLY_PATCH):
            # The apiserver also authorises `create` for a server-side apply (it may create the object).
            calls.add((request.resource.group or "", resource, "create"))
    return calls
