"""kmock's Kubernetes emulator, made faithful enough for kopf 1.45 (see the kubernetes reference, 4.4).

Stock kmock 0.8 stores objects and streams watch events but keeps no resourceVersion, replays old
objects on every watch, answers a failed JSON-patch precondition with 500 and cannot create through
server-side apply. This subclass adds what a kopf operator relies on:

- R1 a global resourceVersion advanced by every write; uid, creationTimestamp, generation on create;
  generation bumped when `spec` changes (so `observedGeneration` means something);
- R2 watches that start from the requested resourceVersion without gaps or replays;
- R3 409 on duplicate create, 422 on a failed JSON-patch `test` (kopf's guarded finalizer patches);
- R4 lists with kind, apiVersion and the current resourceVersion;
- R5 server-side apply that creates missing objects;
- R6 server-side apply that removes the fields its field manager applied before and now leaves out;
plus the `status` and `scale` subresources (status writes do not touch spec and vice versa; `/scale`
reads and writes `.spec.replicas` as an autoscaling/v1 Scale) and equality label selectors.
Like kmock, there are no controllers and no garbage collection: tests play the controllers.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import apps, enums, k8s, parsing, rendering

APPLY_PATCH = "application/apply-patch+yaml"

_stock_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads `/api/v1/namespaces[/NAME]` as the start of a namespaced path and fails;
    kopf lists and watches namespaces when given `--namespace`, so parse them as the resource."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _stock_parse_path(path)


parsing.parse_path = _parse_path_with_namespaces


def _drop_fields_left_out(obj: dict[str, Any], before: Any, after: Any) -> None:
    """Delete from `obj` every mapping key present in the `before` applied config but not in `after`."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return
    for field, old in before.items():
        if field not in after:
            obj.pop(field, None)
        elif isinstance(obj.get(field), dict):
            _drop_fields_left_out(obj[field], old, after[field])


def _matches_selector(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    _revision: int = attrs.field(default=0, init=False)
    # Every published event as (resource, resourceVersion, event), for watches that resume (R2).
    _event_log: list[tuple[Any, int, dict[str, Any]]] = attrs.field(factory=list, init=False)
    # The last configuration each (object, field manager) applied, for server-side apply (R6).
    _applied: dict[tuple[Any, str], Any] = attrs.field(factory=dict, init=False)

    # -- writes ------------------------------------------------------------------------------------

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    async def _publish(self, resource: Any, event_type: str, raw: dict[str, Any]) -> None:
        event = {"type": event_type, "object": copy.deepcopy(raw)}
        self._event_log.append((resource, self._revision, event))
        await self._buses[resource].put(event)

    def _has_subresource(self, resource: Any, name: str) -> bool:
        try:
            return name in self.resources[resource].subresources
        except KeyError:
            return False

    async def _create(self, key: tuple[Any, str | None, str], body: dict[str, Any]) -> None:
        if self._exists(key):
            raise k8s.KubernetesError(409, "AlreadyExists", f"{key[2]} already exists")
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if key[1] is not None:
            meta["namespace"] = key[1]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault(
            "creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_revision()
        if key in self.objects:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        await self._publish(key[0], "ADDED", self.objects[key].raw)

    async def _update(self, key: tuple[Any, str | None, str], data: Any, subresource: str | None) -> None:
        obj = self.objects[key]
        before = copy.deepcopy(obj.raw)
        revision = self._next_revision()
        data = copy.deepcopy(data)
        if isinstance(data, list):
            # JSON patch: the client's `test` ops run against the stored version, then it advances.
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": revision})
        else:
            data = dict(data or {})
            if subresource == "status":
                data = {"status": data["status"]} if "status" in data else {}
            elif self._has_subresource(key[0], "status"):
                data.pop("status", None)
            data.setdefault("metadata", {})
            data["metadata"] = {**(data["metadata"] or {}), "resourceVersion": revision}
        try:
            obj.patch(data)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as error:
            self._revision -= 1
            raise k8s.KubernetesError(422, "Invalid", f"the patch precondition failed: {error}") from error
        if obj.raw.get("spec") != before.get("spec"):
            obj.patch({"metadata": {"generation": before["metadata"].get("generation", 1) + 1}})
        meta = obj.raw["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            await self._remove(key)
        else:
            await self._publish(key[0], "MODIFIED", obj.raw)

    async def _remove(self, key: tuple[Any, str | None, str]) -> None:
        raw = self.objects[key].raw
        raw["metadata"]["resourceVersion"] = self._next_revision()
        self.objects[key].delete()
        await self._publish(key[0], "DELETED", raw)

    async def _delete(self, key: tuple[Any, str | None, str]) -> None:
        if key not in self.objects or self.objects[key].deleted:
            raise k8s.KubernetesObjectNotFoundError()
        meta = self.objects[key].raw["metadata"]
        if meta.get("deletionTimestamp"):
            return
        if meta.get("finalizers"):
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.objects[key].patch(
                {"metadata": {"deletionTimestamp": now, "resourceVersion": self._next_revision()}}
            )
            await self._publish(key[0], "MODIFIED", self.objects[key].raw)
        else:
            await self._remove(key)

    def _exists(self, key: tuple[Any, str | None, str]) -> bool:
        return key in self.objects and not self.objects[key].deleted

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.action not in (
            enums.action.CREATE,
            enums.action.UPDATE,
            enums.action.DELETE,
        ):
            if request.subresource == "scale" and request.action == enums.action.FETCH:
                async with self._lock:
                    return self._scale_response(
                        self._existing((request.resource, request.namespace, request.name))
                    )
            # Reads go to kmock's dispatcher, which serves them with the methods below.
            return await apps.RawHandler._handle(self, request)

        async with self._lock:
            if request.action == enums.action.CREATE:
                meta = (request.data or {}).setdefault("metadata", {})
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                key = (request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
                await self._create(key, request.data)
                return aiohttp.web.json_response(self.objects[key].raw, status=201)
            key = (request.resource, request.namespace, request.name)
            if request.action == enums.action.DELETE:
                last = self._existing(key)
                await self._delete(key)
                return aiohttp.web.json_response(
                    self.objects[key].last.raw if self.objects[key].deleted else last
                )
            content_type = request.headers.get("Content-Type", "")
            is_apply = content_type.startswith(APPLY_PATCH) and request.subresource is None
            manager = (key, request.params.get("fieldManager", ""))
            if is_apply and not self._exists(key):
                self._applied[manager] = copy.deepcopy(request.data)
                await self._create(key, request.data)
                return aiohttp.web.json_response(self.objects[key].raw, status=201)
            self._existing(key)
            if is_apply:
                # R6: a field this manager applied before and leaves out now is removed, as the apiserver
                # does for fields a manager owns (lists are replaced whole, as atomic lists are).
                _drop_fields_left_out(self.objects[key].raw, self._applied.get(manager), request.data)
                self._applied[manager] = copy.deepcopy(request.data)
            if request.subresource == "scale":
                replicas = (request.data or {}).get("spec", {}).get("replicas")
                await self._update(key, {"spec": {"replicas": replicas}}, None)
                return self._scale_response(self.objects[key].raw)
            await self._update(key, request.data, request.subresource)
            return aiohttp.web.json_response(self.objects[key].last.raw)

    def _existing(self, key: tuple[Any, str | None, str]) -> dict[str, Any]:
        if not self._exists(key):
            raise k8s.KubernetesObjectNotFoundError()
        return self.objects[key].raw

    @staticmethod
    def _scale_response(obj: dict[str, Any]) -> aiohttp.web.StreamResponse:
        meta = obj["metadata"]
        return aiohttp.web.json_response(
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta
                },
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
                "status": {
                    "replicas": obj.get("status", {}).get("replicas", 0),
                    "selector": obj.get("status", {}).get("selector", ""),
                },
            }
        )

    # -- reads -------------------------------------------------------------------------------------

    def _visible(self, request: rendering.Request, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return (
            (request.namespace is None or meta.get("namespace") == request.namespace)
            and (request.name is None or meta.get("name") == request.name)
            and _matches_selector(obj, request.params.get("labelSelector"))
        )

    def _current(self, request: rendering.Request) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (resource, _, _), obj in self.objects.items()
            if resource == request.resource and not obj.deleted and self._visible(request, obj.raw)
        ]

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if request.resource not in self._get_resources():
            raise k8s.KubernetesResourceNotFoundError()
        resource = request.resource
        try:
            kind = self.resources[resource].kind or resource.plural.capitalize()
        except KeyError:
            kind = resource.plural.capitalize()
        async with self._lock:
            items = self._current(request)
            revision = str(self._revision)
        return {
            "kind": f"{kind}List",
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now, even if no event ever comes
        since = int(request.params.get("resourceVersion") or 0)
        bus = self._buses[request.resource]
        # Snapshot and subscribe under the writers' lock: no event can fall in between.
        async with self._lock:
            if since:
                backlog = [
                    event
                    for resource, revision, event in self._event_log
                    if resource == request.resource
                    and revision > since
                    and self._visible(request, event["object"])
                ]
            else:
                backlog = [{"type": "ADDED", "object": copy.deepcopy(obj)} for obj in self._current(request)]
            marker = await bus.mark()
        try:
            for event in backlog:
                yield event
            async for event in bus.stream(since=marker):
                if self._visible(request, event["object"]):
                    yield event
        finally:
            await bus.unmark(marker)
