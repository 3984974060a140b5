"""Fixtures for the twin's tests: a store, an API server on port 0, the official client, kubectl.

- ``store``: a Store with namespaces ``default`` and ``kube-system``.
- ``api_server``: an ApiServer over it (bearer token ``TOKEN``), stopped after the test.
- ``kube_client``: a ``kubernetes.client.ApiClient`` for it (plain HTTP); ``kubeconfig``: a kubeconfig
  file for kubectl, pointing at the HTTPS listener (Go clients send no token over plain HTTP).
- ``twin``: a whole running twin of the default scenario with fast timing, one per test module.
- ``objects``: helpers that put nodes, Ready pods, ReplicaSets, DaemonSets and PDBs straight into the store
  (the scheduler and kubelet controllers are not running in these tests).
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from twin import eks
from twin.apiserver import ApiServer
from twin.cluster import Twin
from twin.config import FAST
from twin.faults import Faults
from twin.resources import DAEMONSETS, NAMESPACES, NODES, PDBS, PODS, REPLICASETS
from twin.scenario import load_scenario
from twin.store import Obj, Store, now_iso

TOKEN = "twin-test-token"
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    t = Twin(load_scenario("default"), timing=FAST)
    t.start()
    yield t
    t.stop()


@pytest.fixture
def store() -> Store:
    s = Store()
    for name in ("default", "kube-system"):
        s.create(NAMESPACES, {"metadata": {"name": name}})
    return s


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def api_server(store: Store, faults: Faults) -> Iterator[ApiServer]:
    server = ApiServer(store, token=TOKEN, faults=faults, tls=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def kube_client(api_server: ApiServer) -> Iterator[kubernetes.client.ApiClient]:
    config = kubernetes.client.Configuration()
    config.host = api_server.url
    config.api_key = {"authorization": f"Bearer {TOKEN}"}
    client = kubernetes.client.ApiClient(config)
    yield client
    client.close()


@pytest.fixture
def core(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_client)


@pytest.fixture
def apps(kube_client: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(kube_client)


@pytest.fixture
def kubeconfig(api_server: ApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "twin",
        "clusters": [{"name": "twin", "cluster": {
            "server": api_server.tls_url,
            "certificate-authority-data": base64.b64encode(api_server.ca_pem).decode()}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "twin", "context": {"cluster": "twin", "user": "admin", "namespace": "default"}}],
    }))
    return path


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Any:
    """Run kubectl against the twin: ``kubectl("get", "nodes")`` -> CompletedProcess (text)."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path),
           "KUBECACHEDIR": str(tmp_path / "cache")}

    def run(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    run.env = env  # type: ignore[attr-defined]
    return run


class ObjectFactory:
    """Objects as the controllers would leave them, written straight to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def node(self, name: str, *, ready: bool = True, unschedulable: bool = False,
             labels: dict[str, str] | None = None, ip: str = "192.168.1.10") -> Obj:
        return self.store.create(NODES, {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  **(labels or {})}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                "reason": "KubeletReady", "lastTransitionTime": now_iso()}],
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.30.14-eks-b707fbb", "osImage": "Amazon Linux 2023",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.27"},
            },
        })

    def replicaset(self, name: str, namespace: str = "default", replicas: int = 1,
                   labels: dict[str, str] | None = None) -> Obj:
        labels = labels or {"app": name}
        return self.store.create(REPLICASETS, {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
        })

    def daemonset(self, name: str, namespace: str = "kube-system", labels: dict[str, str] | None = None) -> Obj:
        labels = labels or {"k8s-app": name}
        return self.store.create(DAEMONSETS, {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": name, "image": f"{name}:1"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 1},
        })

    def pod(self, name: str, node: str | None, *, namespace: str = "default",
            labels: dict[str, str] | None = None, ready: bool = True, owner: Obj | None = None,
            phase: str | None = None, ip: str = "10.0.0.1") -> Obj:
        meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}}
        if owner is not None:
            meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                        "controller": True}]
        status: Obj = {"phase": phase or ("Running" if node else "Pending")}
        if node and status["phase"] == "Running":
            status.update(podIP=ip, hostIP="192.168.1.10", conditions=[
                {"type": "Ready", "status": "True" if ready else "False"}],
                containerStatuses=[{"name": "c", "ready": ready, "restartCount": 0,
                                    "state": {"running": {"startedAt": now_iso()}}}])
        return self.store.create(PODS, {
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]} if node else
            {"containers": [{"name": "c", "image": "busybox:1"}]},
            "status": status,
        })

    def pdb(self, name: str, labels: dict[str, str], namespace: str = "default", *,
            min_available: int | str | None = None, max_unavailable: int | str | None = None) -> Obj:
        spec: Obj = {"selector": {"matchLabels": labels}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        return self.store.create(PDBS, {"metadata": {"name": name, "namespace": namespace}, "spec": spec})


@pytest.fixture
def objects(store: Store) -> ObjectFactory:
    return ObjectFactory(store)


@pytest.fixture(scope="module")
def eks_server() -> Iterator[eks.EksServer]:
    """moto's EKS server on a free 127.0.0.1 port, in the runbook's region."""
    srv = eks.EksServer(region="us-west-1")
    srv.start()
    yield srv
    srv.stop()
