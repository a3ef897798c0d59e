"""Helpers shared by the browser tests: a handle on the running server, and screenshots."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "webui"


@dataclass
class StudioServer:
    url: str
    log_path: Path

    def api(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        """A plain HTTP call to the same server, for changes made outside the browser."""
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def clone_voice(self, name: str, sample: Path) -> str:
        """Clones a voice through the API (multipart name + audio_sample); returns its id."""
        boundary = "studio-e2e-boundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="audio_sample"; filename="{sample.name}"\r\n'
                "Content-Type: audio/wav\r\n\r\n"
            ).encode()
            + sample.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, reply = self.api(
            "POST", "/v1/audio/voices", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert status in (200, 201), reply
        return json.loads(reply)["id"]

    def voice_ids(self) -> list[str]:
        status, reply = self.api("GET", "/v1/audio/voices")
        assert status == 200, reply
        return [voice["id"] for voice in json.loads(reply)["voices"]]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def save_screenshot(page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
