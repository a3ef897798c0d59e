"""Helm pre-delete hook: delete the TTSDeployments and VoiceLibraries the operator manages and wait
until they are gone, while the operator still runs to release their finalizers. Without this,
`helm uninstall` removes the operator first and the objects stay Terminating for good.

Runs in the operator image (Python and the `kubernetes` client) as the hook's ServiceAccount.
Environment: WATCH_NAMESPACES (space-separated; empty means every namespace), TIMEOUT_SECONDS.
"""

import os
import sys
import time

from kubernetes import client, config

GROUP, VERSION = "tts.chatterbox.dev", "v1alpha1"
# TTSDeployments first: the operator keeps a VoiceLibrary while a TTSDeployment still uses it.
PLURALS = ("ttsdeployments", "voicelibraries")


def remaining(api: client.CustomObjectsApi, plural: str, namespaces: list[str]) -> list[dict]:
    try:
        if not namespaces:
            return api.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        return [
            item
            for namespace in namespaces
            for item in api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        ]
    except client.ApiException as error:
        if error.status == 404:  # the CRD (or a watched namespace) is gone: nothing of this kind is left
            return []
        raise


def delete_all(api: client.CustomObjectsApi, plural: str, namespaces: list[str], deadline: float) -> None:
    for item in remaining(api, plural, namespaces):
        metadata = item["metadata"]
        if metadata.get("deletionTimestamp"):
            continue
        print(f"deleting {plural} {metadata['namespace']}/{metadata['name']}", flush=True)
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, metadata["namespace"], plural, metadata["name"])
        except client.ApiException as error:
            if error.status != 404:
                raise
    while left := remaining(api, plural, namespaces):
        if time.monotonic() > deadline:
            names = ", ".join(f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in left)
            sys.exit(
                f"{plural} still present after {os.environ.get('TIMEOUT_SECONDS')} s: {names}. "
                "Is the operator running? See its logs and the objects' events and conditions."
            )
        time.sleep(1)


def main() -> None:
    namespaces = os.environ.get("WATCH_NAMESPACES", "").split()
    deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "240"))
    config.load_config()  # a kubeconfig where one is set, else the pod's ServiceAccount
    api = client.CustomObjectsApi()
    for plural in PLURALS:
        delete_all(api, plural, namespaces, deadline)
        print(f"no {plural} left", flush=True)


if __name__ == "__main__":
    main()
