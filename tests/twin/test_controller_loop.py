"""The controllers as they run in a twin: background loops over the store, reached through the API server.

Covers: a started controller reacts to a store event well before its resync period, resyncs without
events, survives a failing pass (logged and counted), and stops; all core controllers started together
with FAST timing bring nodes Ready via the aws-node DaemonSet, and ``kubectl rollout status`` finishes
for a DaemonSet and a Deployment created through the official client, also after ``kubectl rollout
restart``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import kubernetes
import pytest

from twin.config import FAST
from twin.controllers import Controller, core_controllers
from twin.faults import Faults
from twin.resources import NODES, PODS
from twin.store import Obj, Store, now_iso

SLOW_RESYNC = replace(FAST, resync_s=5.0)


class Recorder(Controller):
    """Counts passes; fails on demand."""

    name = "recorder"
    watches = (PODS,)

    def __init__(self, *args: Any, fail: bool = False) -> None:
        super().__init__(*args)
        self.passes = 0
        self.fail = fail
        self.ran = threading.Event()

    def reconcile(self) -> None:
        self.passes += 1
        self.ran.set()
        if self.fail:
            raise RuntimeError("boom")


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class TestLoop:
    def test_an_event_of_a_watched_type_wakes_it_before_resync(self, store: Store, faults: Faults) -> None:
        c = Recorder(store, SLOW_RESYNC, faults)
        c.start()
        try:
            time.sleep(0.05)
            assert c.passes == 0  # nothing happened, the resync is seconds away
            started = time.monotonic()
            store.create(PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {}})
            wait_for(lambda: c.passes == 1, timeout=2.0)
            assert time.monotonic() - started < 1.0
            store.create(NODES, {"metadata": {"name": "n"}})  # not a watched type
            time.sleep(0.2)
            assert c.passes == 1
        finally:
            c.stop()

    def test_it_resyncs_without_events(self, store: Store, faults: Faults) -> None:
        c = Recorder(store, replace(FAST, resync_s=0.02), faults)
        c.start()
        try:
            wait_for(lambda: c.passes >= 3)
        finally:
            c.stop()

    def test_a_failing_pass_is_logged_and_the_loop_goes_on(self, store: Store, faults: Faults,
                                                            caplog: pytest.LogCaptureFixture) -> None:
        c = Recorder(store, replace(FAST, resync_s=0.02), faults, fail=True)
        c.start()
        try:
            wait_for(lambda: c.errors >= 2)
        finally:
            c.stop()
        assert "recorder: reconcile failed" in caplog.text
        assert c._thread is None
        stopped_at = c.passes
        time.sleep(0.1)
        assert c.passes == stopped_at


# ---- everything together, over HTTP ---------------------------------------------------------------

def node(index: int) -> Obj:
    name = f"ip-192-168-1-{index}.us-west-1.compute.internal"
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "eks.amazonaws.com/nodegroup": "ng-1", "cni": "aws-cni"}},
            "spec": {"providerID": f"aws:///us-west-1a/i-0{index:015x}"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.1.{index}"}],
                       "allocatable": {"cpu": "2", "pods": "29"},
                       "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                       "lastHeartbeatTime": now_iso(), "lastTransitionTime": now_iso()}]}}


AWS_NODE = {
    "metadata": {"name": "aws-node", "namespace": "kube-system"},
    "spec": {"selector": {"matchLabels": {"k8s-app": "aws-node"}},
             "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
             "template": {"metadata": {"labels": {"k8s-app": "aws-node"}},
                          "spec": {"hostNetwork": True, "tolerations": [{"operator": "Exists"}],
                                   "containers": [{"name": "aws-node", "image": "amazon-k8s-cni:v1.18.5"}]}}}}
WEB = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


@pytest.fixture
def running(store: Store, faults: Faults) -> Iterator[list[Controller]]:
    for i in (4, 5, 6):
        store.create(NODES, node(i))
    started = core_controllers(store, FAST, faults)
    for c in started:
        c.start()
    yield started
    for c in started:
        c.stop()
    assert all(c.errors == 0 for c in started)


def test_rollouts_finish_for_kubectl(running: list[Controller], kube_client: kubernetes.client.ApiClient,
                                     kubectl: Any) -> None:
    apps = kubernetes.client.AppsV1Api(kube_client)
    core = kubernetes.client.CoreV1Api(kube_client)
    apps.create_namespaced_daemon_set("kube-system", AWS_NODE)
    apps.create_namespaced_deployment("default", WEB)
    kubectl("rollout", "status", "-n", "kube-system", "ds/aws-node", "--timeout=20s")
    kubectl("rollout", "status", "deploy/web", "--timeout=20s")
    assert all(c.status == "True" for n in core.list_node().items for c in n.status.conditions
               if c.type == "Ready")
    before = {p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=web").items}
    assert len(before) == 4
    kubectl("rollout", "restart", "deploy/web")
    out = kubectl("rollout", "status", "deploy/web", "--timeout=20s").stdout
    assert "successfully rolled out" in out
    after = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(after) == 4 and not before & {p.metadata.name for p in after}
    assert {p.status.phase for p in after} == {"Running"}
    assert {p.metadata.annotations["twin.cilium-migration.io/cni"] for p in after} == {"aws-cni"}
