"""A real Kubernetes control plane for tests (etcd, kube-apiserver, controller-manager, scheduler) plus the
two node-side parts a test cluster lacks: a test kubelet and a storage provisioner (`kubelet.py`).

`control_plane.py` finds and starts the binaries, `client.py` is the tests' API client, `identity.py`
makes credentials for a ServiceAccount bound to the chart's RBAC. The pytest fixtures live in
tests/conftest.py, so every test directory shares one control plane per session.
"""
