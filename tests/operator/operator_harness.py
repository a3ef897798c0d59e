"""Helpers for the operator tests: the operator process with the chart's identity, and the API calls it
made (from the API server's audit log).

(A uniquely named module: test directories without __init__.py share one `conftest` module name.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cluster.client import wait_for

TTS_API = "tts.chatterbox.dev/v1alpha1"


def tts_deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "TTSDeployment", "metadata": {"name": name}, "spec": spec}


def voice_library(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": TTS_API, "kind": "VoiceLibrary", "metadata": {"name": name}, "spec": spec}


def condition(obj: dict | None, condition_type: str) -> dict:
    for item in (obj or {}).get("status", {}).get("conditions", []):
        if item["type"] == condition_type:
            return item
    return {}


@dataclass(frozen=True)
class OperatorIdentity:
    """The chart's ServiceAccount: its full user name and a kubeconfig that logs in as it."""

    username: str
    kubeconfig: Path


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


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, workdir: Path, *args: str, resync_seconds: float = 2.0, env: dict | None = None
) -> Iterator[OperatorProcess]:
    """`python -m chatterbox_operator ARGS` logged in through `kubeconfig`; a short resync period."""
    port = _free_port()
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "CHATTERBOX_OPERATOR_RESYNC_SECONDS": str(resync_seconds),
        "CHATTERBOX_OPERATOR_CLAIM_PENDING_SECONDS": "5",
        **(env or {}),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"operator-{port}.log"
    command = [
        sys.executable,
        "-m",
        "chatterbox_operator",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
        *args,
    ]
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=environment, stdout=sink, stderr=subprocess.STDOUT)
    handle = OperatorProcess(process, log)

    def alive() -> bool:
        assert process.poll() is None, f"operator exited early:\n{handle.output}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(alive, timeout=60, what="the operator's liveness endpoint")
        yield handle
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def operator_calls(audit_events: list[dict]) -> set[tuple[str, str, str]]:
    """(group, resource[/subresource], verb) of every API request in the audit log's entries."""
    calls = set()
    for entry in audit_events:
        ref = entry.get("objectRef")
        if not ref or not ref.get("resource"):
            continue  # discovery and other non-resource URLs, allowed to every authenticated client
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        group = ref.get("apiGroup", "")
        calls.add((group, resource, entry["verb"]))
        if entry["verb"] == "patch" and entry.get("responseStatus", {}).get("code") == 201:
            calls.add((group, resource, "create"))  # a server-side apply that created the object
    return calls
