"""The operator's API layer (kopf's authenticated client underneath) against the real API server."""

import httpx
import kopf
import pytest
from chatterbox_operator import resources as r
from chatterbox_operator.kube import ApiError, KubeApi, authenticated_context

pytestmark = pytest.mark.cluster

CONFIG_MAPS = r.Resource("", "v1", "configmaps", "ConfigMap")


def config_map(namespace: str, data: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": namespace},
        "data": data,
    }


@pytest.fixture
async def api(kube_cluster):
    plane = kube_cluster.plane
    info = kopf.ConnectionInfo(server=plane.url, ca_path=str(plane.ca_path), token=plane.admin_token)
    async with authenticated_context(info):
        yield KubeApi()


async def test_apply_creates_then_updates(api: KubeApi, namespace: str) -> None:
    created = await api.apply(CONFIG_MAPS, config_map(namespace, {"a": "1"}))
    updated = await api.apply(CONFIG_MAPS, config_map(namespace, {"a": "2"}))
    assert created["metadata"]["uid"] == updated["metadata"]["uid"]
    assert (await api.get(CONFIG_MAPS, namespace, "c"))["data"] == {"a": "2"}
    managers = {entry["manager"] for entry in updated["metadata"]["managedFields"]}
    assert managers == {"chatterbox-operator"}


async def test_missing_objects_are_not_errors(api: KubeApi, namespace: str) -> None:
    assert await api.get(CONFIG_MAPS, namespace, "absent") is None
    assert await api.delete(CONFIG_MAPS, namespace, "absent") is False
    await api.apply(CONFIG_MAPS, config_map(namespace, {}))
    assert await api.delete(CONFIG_MAPS, namespace, "c") is True


async def test_api_errors_carry_status_and_message(api: KubeApi, namespace: str) -> None:
    with pytest.raises(ApiError) as error:
        await api.patch_status(r.DEPLOYMENTS, namespace, "absent", {"replicas": 1})
    assert error.value.status == 404
    assert error.value.reason == "NotFound"
    assert 'deployments.apps "absent" not found' in error.value.message


async def test_discovery_of_an_api_group_that_is_not_installed(kube_cluster, api: KubeApi) -> None:
    # What a cluster without the Prometheus Operator answers: 404 with a plain-text body, not JSON.
    plane = kube_cluster.plane
    raw = httpx.get(
        f"{plane.url}/apis/monitoring.coreos.com/v1",
        verify=str(plane.ca_path),
        headers={"Authorization": f"Bearer {plane.admin_token}"},
    )
    assert raw.status_code == 404 and not raw.headers["content-type"].startswith("application/json")
    assert await api.serves(r.DEPLOYMENTS)
    assert not await api.serves(r.SERVICE_MONITORS)
