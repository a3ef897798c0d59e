"""One running test cluster: the control plane, the test kubelet process and an admin client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from cluster import control_plane
from cluster.client import ApiError, KubeClient, wait_for

TESTS_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Cluster:
    plane: control_plane.ControlPlane
    kubelet: subprocess.Popen
    admin: KubeClient

    @property
    def directory(self) -> Path:
        return self.plane.directory

    def client(self, token: str, user_agent: str) -> KubeClient:
        return KubeClient(self.plane.url, self.plane.ca_path, token, user_agent=user_agent)

    def new_namespace(self, prefix: str, *, restricted: bool = True) -> str:
        """A fresh namespace; `restricted` enforces the Pod Security 'restricted' level in it, as
        locked-down clusters (and OpenShift's restricted-v2) do."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
        self.admin.create_namespace(name, labels)
        # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
        wait_for(
            lambda: self.admin.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
            what=f"the default ServiceAccount of {name}",
        )
        return name

    def install_crds(self, manifests: list[dict]) -> None:
        """Apply CRDs and wait until the API server serves them: established, and their watch cache
        filled.

        The cache matters for `remove_crds`: the API server's CRD finalizer lists a CRD's objects from it,
        and on a cold cache fails with "storage is (re)initializing"; its retry can then lose its wake-up
        and wait for the 5-minute informer resync (measured: 2 deletions in 20 stalled ~290 s; none in 30
        once the cache was filled first)."""
        for crd in manifests:
            self.admin.apply(crd)
        for crd in manifests:
            name = crd["metadata"]["name"]

            def established(name: str = name) -> bool:
                found = self.admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = ((found or {}).get("status") or {}).get("conditions") or []
                return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

            wait_for(established, what=f"CRD {name} established")
            version = next(v["name"] for v in crd["spec"]["versions"] if v.get("served", True))
            objects = f"/apis/{crd['spec']['group']}/{version}/{crd['spec']['names']['plural']}"
            wait_for(lambda objects=objects: self._cached_list_served(objects), what=f"{objects} cached")

    def _cached_list_served(self, objects: str) -> bool:
        try:  # resourceVersion=0 is answered from the watch cache
            self.admin.call("GET", objects, params={"resourceVersion": "0", "limit": "1"})
        except ApiError as error:
            if error.status in (429, 503):  # the cache is still initializing
                return False
            raise
        return True

    def remove_crds(self, names: list[str]) -> None:
        for name in names:
            self.admin.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        for name in names:
            wait_for(
                lambda name=name: (
                    self.admin.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") is None
                ),
                what=f"CRD {name} removed",
            )

    def stop(self) -> None:
        self.admin.close()
        self.kubelet.terminate()
        try:
            self.kubelet.wait(10)
        except subprocess.TimeoutExpired:
            self.kubelet.kill()
            self.kubelet.wait()
        self.plane.stop()


def start(directory: Path, nodes: list[str] | None = None) -> Cluster:
    """Start the control plane in `directory`, then the test kubelet with `nodes` (its defaults if None)."""
    plane = control_plane.start(directory)
    try:
        token_file = directory / "pki" / "admin.token"
        ready = directory / "kubelet.ready"
        command = [
            sys.executable,
            "-m",
            "cluster.kubelet",
            "--server",
            plane.url,
            "--ca",
            str(plane.ca_path),
            "--token-file",
            str(token_file),
            "--ready-file",
            str(ready),
        ]
        for node in nodes or []:
            command += ["--node", node]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        }
        with (directory / "logs" / "test-kubelet.log").open("w") as log:
            kubelet = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if kubelet.poll() is not None or time.monotonic() > deadline:
                kubelet.kill()
                raise RuntimeError(
                    "the test kubelet did not start:\n"
                    + (directory / "logs" / "test-kubelet.log").read_text()
                )
            time.sleep(0.1)
    except BaseException:
        plane.stop()
        raise
    admin = KubeClient(plane.url, plane.ca_path, plane.admin_token)
    return Cluster(plane, kubelet, admin)


def load_yaml_documents(paths: list[Path]) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]
