"""The operator's API layer against the emulator: apply, not-found handling, errors, re-login."""

import kopf
import pytest
from chatterbox_operator import resources as r
from chatterbox_operator.kube import ApiError, KubeApi
from operator_harness import NAMESPACE


def config_map(data: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": NAMESPACE},
        "data": data,
    }


@pytest.fixture
async def api(emulator):
    client = KubeApi(lambda: kopf.ConnectionInfo(server=str(emulator.url), token="t"))
    yield client
    await client.close()


CONFIG_MAPS = r.Resource("", "v1", "configmaps", "ConfigMap")


async def test_apply_creates_then_updates(api: KubeApi) -> None:
    created = await api.apply(CONFIG_MAPS, config_map({"a": "1"}))
    updated = await api.apply(CONFIG_MAPS, config_map({"a": "2"}))
    assert created["metadata"]["uid"] == updated["metadata"]["uid"]
    assert (await api.get(CONFIG_MAPS, NAMESPACE, "c"))["data"] == {"a": "2"}


async def test_missing_objects_are_not_errors(api: KubeApi) -> None:
    assert await api.get(CONFIG_MAPS, NAMESPACE, "absent") is None
    assert await api.delete(CONFIG_MAPS, NAMESPACE, "absent") is False
    await api.apply(CONFIG_MAPS, config_map({}))
    assert await api.delete(CONFIG_MAPS, NAMESPACE, "c") is True


async def test_api_errors_carry_status_and_reason(api: KubeApi) -> None:
    with pytest.raises(ApiError) as error:
        await api.patch_status(CONFIG_MAPS, NAMESPACE, "absent", {"phase": "x"})
    assert error.value.status == 404


async def test_discovery_tells_whether_a_resource_is_served(api: KubeApi) -> None:
    assert await api.serves(r.DEPLOYMENTS)
    assert not await api.serves(r.SERVICE_MONITORS)


async def test_unauthorized_logs_in_again_once(emulator) -> None:
    tokens = iter(["expired", "fresh"])
    api = KubeApi(lambda: kopf.ConnectionInfo(server=str(emulator.url), token=next(tokens)))
    emulator[{"Authorization": "Bearer expired"}] << 401
    try:
        assert await api.get(CONFIG_MAPS, NAMESPACE, "absent") is None
    finally:
        await api.close()
    assert [q.headers["Authorization"] for q in list(emulator)] == ["Bearer expired", "Bearer fresh"]


def test_credentials_come_from_kubeconfig_outside_a_cluster(tmp_path, monkeypatch) -> None:
    from chatterbox_operator.kube import discover_credentials

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://k8s.example:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: speech}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    info = discover_credentials()
    assert (info.server, info.token, info.insecure) == ("https://k8s.example:6443", "abc", True)
