"""A small async Kubernetes API client for the operator's own calls.

kopf brings aiohttp and its own credential discovery (`KUBECONFIG`, then in-cluster service account);
this layer reuses those credentials, so there is no second Kubernetes client library to configure.
Every call goes through `_request`, and `resources.API_CALLS` lists the (group, resource, verb)
combinations used here, which is what the RBAC role grants.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from chatterbox_operator.resources import Resource

FIELD_MANAGER = "chatterbox-operator"
_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
# The apiserver accepts JSON under the apply content type (JSON is YAML).
_APPLY_PATCH = "application/apply-patch+yaml"


class ApiError(Exception):
    """A Kubernetes API error response, with the apiserver's reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def discover_credentials() -> kopf.ConnectionInfo:
    """In-cluster service account first, then KUBECONFIG / ~/.kube/config (kopf's own order)."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no Kubernetes credentials: not in a cluster and no KUBECONFIG")
    return info


def _ssl_context(info: kopf.ConnectionInfo, scratch: Path) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=str(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context.load_verify_locations(cadata=data if "BEGIN" in data else base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    # ssl only loads client certificates from files.
    if info.certificate_data:
        cert = scratch / "client.crt"
        cert.write_bytes(_pem(info.certificate_data))
    if info.private_key_data:
        key = scratch / "client.key"
        key.write_bytes(_pem(info.private_key_data))
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _auth_headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        return {"Authorization": aiohttp.BasicAuth(info.username, info.password).encode()}
    return {}


def _pem(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if b"BEGIN" in raw else base64.b64decode(raw)


class KubeApi:
    """Namespaced CRUD, server-side apply and status patches over one aiohttp session."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo] = discover_credentials) -> None:
        self._login = login
        info = login()
        self._server = info.server.rstrip("/")
        self._scratch = tempfile.TemporaryDirectory(prefix="chatterbox-operator-")
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info, Path(self._scratch.name)))
        self._session = aiohttp.ClientSession(
            headers={"Accept": _JSON, "User-Agent": FIELD_MANAGER},
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self._auth_headers = _auth_headers(info)

    async def close(self) -> None:
        await self._session.close()
        self._scratch.cleanup()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = _JSON,
        params: dict | None = None,
    ) -> dict[str, Any]:
        try:
            return await self._send(method, path, body, content_type, params)
        except ApiError as error:
            if error.status != 401:
                raise
        # Service-account tokens are rotated on disk: log in again once, then retry.
        self._auth_headers = _auth_headers(self._login())
        return await self._send(method, path, body, content_type, params)

    async def _send(
        self, method: str, path: str, body: Any, content_type: str, params: dict | None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {**self._auth_headers, **({"Content-Type": content_type} if body is not None else {})}
        try:
            async with self._session.request(
                method, self._server + path, data=data, headers=headers, params=params
            ) as response:
                payload = await response.json(content_type=None) if response.content_length != 0 else {}
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ApiError(503, "Unavailable", f"{method} {path}: {error!r}") from error
        if status >= 400:
            payload = payload if isinstance(payload, dict) else {}
            raise ApiError(status, payload.get("reason", reason), payload.get("message", ""))
        return payload or {}

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        listing = await self._request("GET", resource.path(namespace), params=params)
        return listing.get("items", [])

    async def apply(self, resource: Resource, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or update `manifest` with server-side apply: idempotent, and fields the operator
        stops rendering are removed, while fields others own (e.g. status) are left alone."""
        meta = manifest["metadata"]
        return await self._request(
            "PATCH",
            resource.path(meta["namespace"], meta["name"]),
            body=manifest,
            content_type=_APPLY_PATCH,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def patch_status(
        self, resource: Resource, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self._request(
            "PATCH",
            resource.path(namespace, name, "status"),
            body={"status": status},
            content_type=_MERGE_PATCH,
        )

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete if present; False when there was nothing to delete."""
        try:
            await self._request("DELETE", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def serves(self, resource: Resource) -> bool:
        """Whether the cluster serves `resource` (e.g. the Prometheus Operator's CRD is installed).
        Discovery is readable by every authenticated client, so this needs no RBAC rule."""
        try:
            listing = await self._request("GET", resource.path().rsplit("/", 1)[0])
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return any(item.get("name") == resource.plural for item in listing.get("resources", []))
