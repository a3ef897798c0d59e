"""The operator as a local process (`python -m chatterbox_operator`) logged in through a kubeconfig, as
its pod would run: used by the operator tests and by the chart tests that play a Helm release."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from cluster.client import wait_for


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
