"""The operator's own Kubernetes API calls, sent through kopf's authenticated client.

kopf logs in (through the `kubernetes` library: in-cluster service account, or any kubeconfig with exec
plugins, OIDC and token refresh) and keeps the credentials in its vault; every call here goes through
kopf's `request`, so it uses those same credentials, kopf's session and retries, and a 401 makes kopf log
in again. There is no second login. `resources.API_CALLS` lists the (group, resource, verb) combinations
used here, which is what the RBAC role grants.

These calls need kopf's operator context (its handlers and startup run in it); tests that call them
directly set one up with `authenticated_context`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import kopf
from kopf._cogs.clients import api as kopf_api  # kopf's authenticated request (pinned kopf version)
from kopf._cogs.clients import auth as kopf_auth
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.structs import credentials as kopf_credentials

from chatterbox_operator.resources import Resource

FIELD_MANAGER = "chatterbox-operator"
_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
# The apiserver accepts JSON under the apply content type (JSON is YAML).
_APPLY_PATCH = "application/apply-patch+yaml"
# Whether an optional API (the Prometheus Operator's, OpenShift's) is served changes rarely: ask again
# after this long instead of on every reconcile (a CRD event also clears the answers). An API just
# installed may take a moment to show in discovery, so "not served" is asked again sooner.
DISCOVERY_TTL_SECONDS = 60.0
NOT_SERVED_TTL_SECONDS = 5.0

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A Kubernetes API error response, with the apiserver's reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@contextlib.asynccontextmanager
async def authenticated_context(info: kopf.ConnectionInfo) -> AsyncIterator[None]:
    """Outside a running operator (tests, tools): a kopf vault holding `info` for the calls made inside."""
    vault = kopf_credentials.Vault()
    await vault.populate({"login": info})
    token = kopf_auth.vault_var.set(vault)
    try:
        yield
    finally:
        kopf_auth.vault_var.reset(token)
        await vault.close()


class KubeApi:
    """Namespaced CRUD, server-side apply and status patches over kopf's authenticated session."""

    def __init__(self, settings: kopf.OperatorSettings | None = None) -> None:
        self._settings = settings or kopf.OperatorSettings()
        self._served: dict[str, tuple[float, bool]] = {}
        # Paths of switched-off children this process deleted or found missing (and has not applied
        # since): every resync would otherwise send the same DELETE for each of them.
        self._absent: set[str] = set()
        # Requests sent, for the scale benchmark's requests-per-reconcile figure.
        self.requests = 0

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = _JSON,
        params: dict | None = None,
    ) -> dict[str, Any]:
        url = path + (f"?{urlencode(params)}" if params else "")
        headers = {"Content-Type": content_type, "User-Agent": FIELD_MANAGER}
        self.requests += 1
        try:
            response = await kopf_api.request(
                method, url, payload=body, headers=headers, settings=self._settings, logger=logger
            )
            async with response:
                return await response.json() if response.content_length != 0 else {}
        except kopf_errors.APIError as error:
            payload = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
            message = error.message or (str(error.args[0]) if error.args and error.args[0] else "")
            raise ApiError(error.status, payload.get("reason", ""), message) from error

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self,
        resource: Resource,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        listing = await self._request("GET", resource.path(namespace), params=params or None)
        return listing.get("items", [])

    async def apply(self, resource: Resource, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or update `manifest` with server-side apply: idempotent, and fields the operator
        stops rendering are removed, while fields others own (e.g. status) are left alone."""
        meta = manifest["metadata"]
        self._absent.discard(resource.path(meta["namespace"], meta["name"]))
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

    async def ensure_absent(self, resource: Resource, namespace: str, name: str) -> None:
        """Delete a switched-off child, once: later calls trust that it stayed gone."""
        path = resource.path(namespace, name)
        if path not in self._absent:
            await self.delete(resource, namespace, name)
            self._absent.add(path)

    def forget_discovery(self) -> None:
        self._served.clear()

    async def serves(self, resource: Resource) -> bool:
        """Whether the cluster serves `resource` (e.g. the Prometheus Operator's CRD is installed),
        remembered for a while. An API group that is not installed answers 404 with a
        plain-text body. Discovery is readable by every authenticated client: no RBAC rule needed."""
        key = resource.path()
        checked_at, served = self._served.get(key, (float("-inf"), False))
        if time.monotonic() - checked_at < (DISCOVERY_TTL_SECONDS if served else NOT_SERVED_TTL_SECONDS):
            return served
        try:
            listing = await self._request("GET", key.rsplit("/", 1)[0])
            served = any(item.get("name") == resource.plural for item in listing.get("resources", []))
        except ApiError as error:
            if error.status != 404:
                raise
            served = False
        self._served[key] = (time.monotonic(), served)
        return served
