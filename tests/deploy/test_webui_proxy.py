"""webui/nginx.conf, run by a real nginx in front of a real chatterbox-server: the static UI with
deep links, and the API under /api with streaming and voice uploads intact. nginx looks the API's
Service name up in DNS (a small DNS server here plays the cluster's), so it starts before the
Service exists.

The web UI image renders the file from a template at start (${CHATTERBOX_API_URL} and
${NGINX_LOCAL_RESOLVERS} are set); the test does the same substitution and points `listen` and
`root` at temporary places.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

from .conftest import REPO_ROOT

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian package nginx-light)"),
]

INDEX_HTML = "<!doctype html><title>Chatterbox Studio</title>"
# Workers run as the test's user, so they can read pytest's private temporary directories (nginx
# ignores `user` when not started as root).
MAIN_CONFIG = """
user {user};
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 64; }}
http {{
  types {{ text/html html; application/javascript js; }}
  access_log off;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  include {run}/default.conf;
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClusterDns(BaseResolver):
    """The cluster's DNS: A records for the Service names that exist now, NXDOMAIN for the rest."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.server = DNSServer(self, address="127.0.0.1", port=0)
        self.server.start_thread()
        self.address = f"127.0.0.1:{self.server.server.server_address[1]}"

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        if name in self.records and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.records[name]), ttl=5))
        elif name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture(scope="module")
def cluster_dns() -> Iterator[ClusterDns]:
    dns = ClusterDns()
    yield dns
    dns.server.stop()


@contextlib.contextmanager
def running_nginx(run: Path, api_url: str, resolvers: str) -> Iterator[str]:
    """nginx serving a stand-in UI build with webui/nginx.conf; yields its URL once /healthz answers."""
    html = run / "html"
    (html / "assets").mkdir(parents=True)
    (html / "index.html").write_text(INDEX_HTML)
    (html / "assets" / "app-1234.js").write_text("console.log('studio')")
    port = free_port()
    site = (REPO_ROOT / "webui" / "nginx.conf").read_text()
    site = site.replace("${CHATTERBOX_API_URL}", api_url).replace("${NGINX_LOCAL_RESOLVERS}", resolvers)
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace(
        "/usr/share/nginx/html", str(html)
    )
    (run / "default.conf").write_text(site)
    (run / "nginx.conf").write_text(MAIN_CONFIG.format(run=run, user=getpass.getuser()))
    process = subprocess.Popen(
        [NGINX, "-c", str(run / "nginx.conf"), "-e", str(run / "error.log"), "-g", "daemon off;"]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, f"nginx exited: {(run / 'error.log').read_text()}"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def service_url(name: str, upstream: str) -> str:
    """The chart's CHATTERBOX_API_URL shape (the Service's full DNS name) on the upstream's port."""
    return f"http://{name}.chatterbox-system.svc.cluster.local:{urlsplit(upstream).port}"


@pytest.fixture(scope="module")
def web_ui(
    inference_server: Any, cluster_dns: ClusterDns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    api_url = service_url("chatterbox", inference_server.url)
    cluster_dns.records[urlsplit(api_url).hostname] = "127.0.0.1"
    with running_nginx(tmp_path_factory.mktemp("nginx"), api_url, cluster_dns.address) as url:
        yield url


def test_deep_links_load_the_app_and_assets_are_cached(web_ui: str) -> None:
    page = httpx.get(f"{web_ui}/voices/some-voice")
    assert page.status_code == 200 and page.text == INDEX_HTML
    assert page.headers["cache-control"] == "no-cache"
    asset = httpx.get(f"{web_ui}/assets/app-1234.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert httpx.get(f"{web_ui}/assets/missing.js").status_code == 404


def test_api_is_proxied_without_the_prefix(web_ui: str) -> None:
    with httpx.Client(base_url=f"{web_ui}/api", timeout=120) as client:
        assert client.get("/v1/audio/voices").json()["voices"]
        speech = client.post(
            "/v1/audio/speech",
            json={
                "model": "chatterbox",
                "input": "Through the web UI.",
                "voice": "alloy",
                "response_format": "wav",
            },
        )
        assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
        # Errors keep their status and body (the UI shows the server's message).
        bad = client.post("/v1/audio/speech", json={"input": ""})
        assert bad.status_code == 400 and "error" in bad.json()


def test_streamed_speech_arrives_as_server_sent_events(web_ui: str) -> None:
    request = {
        "model": "chatterbox",
        "input": "Streaming, one. Two.",
        "voice": "alloy",
        "stream_format": "sse",
    }
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", f"{web_ui}/api/v1/audio/speech", json=request) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert any("speech.audio.delta" in event for event in events)
    assert "speech.audio.done" in events[-1]


def test_voice_uploads_larger_than_nginx_default_pass(web_ui: str) -> None:
    from server.conftest import speech_sample

    sample = speech_sample(seconds=40, audio_format="wav")
    assert len(sample) > 1024 * 1024, "must exceed nginx's default 1 MiB body limit"
    with httpx.Client(base_url=f"{web_ui}/api", timeout=120) as client:
        created = client.post(
            "/v1/audio/voices",
            data={"name": "proxied"},
            files={"audio_sample": ("sample.wav", sample, "audio/wav")},
        )
        assert created.status_code == 200, created.text
        assert client.delete(f"/v1/audio/voices/{created.json()['id']}").status_code == 200


def test_ui_starts_before_the_api_service_exists(
    inference_server: Any, cluster_dns: ClusterDns, tmp_path: Path
) -> None:
    """Installed together, the web UI pod often starts before the operator has made the API Service."""
    api_url = service_url("not-yet", inference_server.url)
    with running_nginx(tmp_path, api_url, cluster_dns.address) as web_ui:
        assert httpx.get(f"{web_ui}/voices").text == INDEX_HTML
        waiting = httpx.get(f"{web_ui}/api/v1/audio/voices")
        assert waiting.status_code == 503 and waiting.headers["retry-after"] == "10"
        assert waiting.json()["error"]["code"] == "api_unavailable"
        # The operator creates the Service: nginx finds it without a restart.
        cluster_dns.records[urlsplit(api_url).hostname] = "127.0.0.1"
        deadline = time.monotonic() + 60
        while (answer := httpx.get(f"{web_ui}/api/v1/audio/voices")).status_code != 200:
            assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        assert answer.json()["voices"]
