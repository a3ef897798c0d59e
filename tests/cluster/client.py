"""The tests' own Kubernetes API client: plain HTTP (httpx) with the API server's CA and a bearer token.

Synchronous on purpose: the operator, the test kubelet and the control plane run in their own processes,
so a test blocking on a request holds up nobody. Paths come from API discovery, so any manifest (a chart's
output, a CRD, a custom resource) can be applied by its apiVersion and kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
TEST_MANAGER = "chatterbox-tests"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeClient:
    def __init__(self, server: str, ca_path: Path, token: str, *, user_agent: str = TEST_MANAGER) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            verify=str(ca_path),
            headers={"Authorization": f"Bearer {token}", "User-Agent": user_agent},
            timeout=30,
        )
        self._discovered: dict[str, dict[str, dict[str, Any]]] = {}

    def close(self) -> None:
        self._http.close()

    # -- raw calls ------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Content-Type": content_type} if body is not None else {}
        response = self._http.request(method, path, json=body, headers=headers, params=params)
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"reason": response.reason_phrase, "message": response.text.strip()}
            raise ApiError(response.status_code, payload.get("reason", ""), payload.get("message", ""))
        return response.json() if response.content else None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def delete(self, path: str, **params: str) -> bool:
        try:
            self.call("DELETE", path, params=params or None)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        return self.call("GET", path, params=params or None)["items"]

    # -- by apiVersion and kind -----------------------------------------------------------------------

    def resource(self, api_version: str, kind: str, *, refresh: bool = False) -> dict[str, Any]:
        """The discovery entry (name = plural, namespaced, verbs) of a kind."""
        if refresh or api_version not in self._discovered:
            base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            listing = self.get(base) or {"resources": []}
            self._discovered[api_version] = {
                item["kind"]: item for item in listing["resources"] if "/" not in item["name"]
            }
        found = self._discovered[api_version].get(kind)
        if found is None and not refresh:
            return self.resource(api_version, kind, refresh=True)
        if found is None:
            raise LookupError(f"the API server does not serve {kind} in {api_version}")
        return found

    def path(
        self,
        api_version: str,
        kind: str,
        name: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> str:
        info = self.resource(api_version, kind)
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        parts = [base]
        if info["namespaced"] and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(info["name"])
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def path_of(self, manifest: dict[str, Any], namespace: str | None = None) -> str:
        meta = manifest["metadata"]
        return self.path(
            manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace", namespace)
        )

    def apply(
        self, manifest: dict[str, Any], namespace: str | None = None, *, manager: str = TEST_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply (create or update) of any manifest."""
        body = {**manifest, "metadata": dict(manifest["metadata"])}
        info = self.resource(manifest["apiVersion"], manifest["kind"])
        if info["namespaced"]:
            body["metadata"].setdefault("namespace", namespace)
        return self.call(
            "PATCH",
            self.path_of(body),
            body,
            content_type=APPLY_PATCH,
            params={"fieldManager": manager, "force": "true"},
        )

    def apply_all(self, manifests: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        for manifest in manifests:
            self.apply(manifest, namespace)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        )

    def events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        return [
            event
            for event in self.items(f"/api/v1/namespaces/{namespace}/events")
            if event["involvedObject"].get("name") == involved_name
        ]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (which is returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")
