"""Every node's CNI configuration directory (``/etc/cni/net.d``) and the CNI it makes the runtime use.

Specification (Cilium 1.16 beside the AWS VPC CNI), driven through ``reconcile()`` on a Store:
- aws-node writes ``10-aws.conflist`` once it is up, and leaves it when its pod stops.
- A Ready Cilium agent writes ``05-cilium.conflist``; with ``cni-exclusive`` (the chart's default, and
  when unset) it renames every other config file to ``<name>.cilium_bak``.
- The agent's preStop hook removes ``05-cilium.conflist`` and restores the backups only when the
  ``cilium-config`` it mounted says ``cni-uninstall: "true"``; a value set after the agent stopped comes
  too late, a ConfigMap deleted before the agent keeps the last value it had.
- The runtime uses the first config file by name, and a pod waits (``ContainerCreating``) until that
  CNI's agent is Ready on its node: so Cilium uninstalled without ``cni.uninstall=true`` leaves a node
  that is Ready (aws-node runs) but where no new pod starts.
- A deleted node loses its directory; the chart renders ``cni-uninstall`` only when ``cni.uninstall`` is
  set; ``GET /_twin/cni`` and ``Twin.cni_configs()`` answer the directories.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from cilium_migration import cilium
from tests.twin.test_controller_nodes import add_node, add_pod, node_ready, pod, settle
from twin.cluster import Twin
from twin.config import FAST
from twin.controllers.base import CNI_ANNOTATION, Controller, pod_ready, run_until
from twin.controllers.daemonsets import DaemonSetController
from twin.controllers.kubelet import Kubelet
from twin.controllers.nodelifecycle import NodeLifecycle
from twin.faults import Faults
from twin.resources import CONFIGMAPS, DAEMONSETS, NODES, PODS
from twin.store import Obj, Store

AWS, CILIUM = "10-aws.conflist", "05-cilium.conflist"
AWS_BAK = AWS + ".cilium_bak"
CHART = Path(__file__).resolve().parents[2] / "twin" / "charts" / "cilium"


# ---- the cluster: aws-node and the Cilium agent as DaemonSets on one node --------------------------

def agent_daemonset(store: Store, name: str, *, node: str | None = None) -> Obj:
    """aws-node or cilium, as their real manifests run them (host network, tolerating everything);
    with ``node``, on that node only."""
    spec: Obj = {"hostNetwork": True, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": name, "image": f"{name}:1"}]}
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return store.create(DAEMONSETS, {
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": name}},
                 "template": {"metadata": {"labels": {"k8s-app": name}}, "spec": spec}}})


def cilium_config(store: Store, **data: str) -> None:
    store.create(CONFIGMAPS, {"metadata": {"name": "cilium-config", "namespace": "kube-system"},
                              "data": {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                                       **data}})


def set_uninstall(store: Store, value: str) -> None:
    store.mutate(CONFIGMAPS, "kube-system", "cilium-config", lambda cm: cm["data"].update({"cni-uninstall": value}))


def agent_pods(store: Store, app: str) -> list[Obj]:
    return [p for p in store.iter_all(PODS) if (p["metadata"].get("labels") or {}).get("k8s-app") == app]


def cni_of(p: Obj) -> str | None:
    return (p["metadata"].get("annotations") or {}).get(CNI_ANNOTATION)


class Cluster:
    """One node (ip-192-168-1-4) with the DaemonSet, kubelet and node lifecycle controllers."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self.store = store
        self.node = add_node(store, 4)
        self.kubelet = Kubelet(store, FAST, faults)
        self.chain: list[Controller] = [DaemonSetController(store, FAST, faults), self.kubelet,
                                        NodeLifecycle(store, FAST, faults)]

    def files(self) -> list[str] | None:
        return self.kubelet.cni_dirs.snapshot().get(self.node)

    def until(self, predicate: Callable[[], bool], what: str) -> None:
        run_until(self.chain, predicate, what=what)

    def until_files(self, files: list[str]) -> None:
        run_until(self.chain, lambda: self.files() == files, what=f"{files} in /etc/cni/net.d")

    def agent_ready(self, app: str) -> bool:
        return any(pod_ready(p) for p in agent_pods(self.store, app))

    def start_aws_node(self) -> None:
        agent_daemonset(self.store, "aws-node")
        self.until_files([AWS])
        self.until(lambda: node_ready(self.store, self.node), "node Ready")

    def start_cilium(self) -> None:
        agent_daemonset(self.store, "cilium")
        self.until(lambda: self.agent_ready("cilium") and CILIUM in (self.files() or []), "Cilium Ready")

    def run_pod(self, name: str) -> Obj:
        add_pod(self.store, name, self.node)
        self.until(lambda: pod_ready(pod(self.store, name)), f"{name} Ready")
        return pod(self.store, name)


@pytest.fixture
def cluster(store: Store, faults: Faults) -> Cluster:
    return Cluster(store, faults)


def waits_for_its_network(store: Store, name: str) -> bool:
    status = pod(store, name)["status"]
    return (status["phase"] == "Pending" and "podIP" not in status
            and status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}})


# ---- what the agents write -------------------------------------------------------------------------

class TestAgentsWrite:
    def test_a_new_node_has_an_empty_directory_and_its_pods_wait(self, cluster: Cluster) -> None:
        add_pod(cluster.store, "web", cluster.node)
        settle(cluster.chain, 0.2)
        assert cluster.files() == []
        assert waits_for_its_network(cluster.store, "web")

    def test_aws_node_writes_10_aws_and_pods_are_wired_by_aws_cni(self, cluster: Cluster) -> None:
        cluster.start_aws_node()
        assert cni_of(cluster.run_pod("web")) == "aws-cni"

    def test_aws_node_leaves_its_file_when_its_pod_stops(self, cluster: Cluster) -> None:
        cluster.start_aws_node()
        [agent] = agent_pods(cluster.store, "aws-node")
        cluster.store.delete(DAEMONSETS, "kube-system", "aws-node")
        cluster.until(lambda: cluster.store.get(PODS, "kube-system", agent["metadata"]["name"]) is None,
                      "aws-node gone")
        settle(cluster.chain, 0.1)
        assert cluster.files() == [AWS]

    @pytest.mark.parametrize("exclusive", [pytest.param({}, id="cni-exclusive-unset"),
                                           pytest.param({"cni-exclusive": "true"}, id="cni-exclusive-true")])
    def test_cilium_writes_05_cilium_and_backs_up_the_other_configs(self, cluster: Cluster,
                                                                    exclusive: dict[str, str]) -> None:
        cilium_config(cluster.store, **exclusive)
        cluster.start_aws_node()
        cluster.start_cilium()
        cluster.until_files([CILIUM, AWS_BAK])
        assert cni_of(cluster.run_pod("web")) == "cilium"

    def test_without_cni_exclusive_cilium_leaves_other_configs_but_still_sorts_first(
            self, cluster: Cluster) -> None:
        cilium_config(cluster.store, **{"cni-exclusive": "false"})
        cluster.start_aws_node()
        cluster.start_cilium()
        settle(cluster.chain, 0.1)
        assert cluster.files() == [CILIUM, AWS]
        assert cni_of(cluster.run_pod("web")) == "cilium"

    def test_an_agent_that_never_turns_ready_writes_nothing(self, store: Store) -> None:
        cluster = Cluster(store, Faults(agent_never_ready=["ng-1"]))
        agent_daemonset(store, "cilium")
        cluster.until(lambda: any(p["status"].get("phase") == "Running" for p in agent_pods(store, "cilium")),
                      "cilium Running")
        settle(cluster.chain, 0.2)
        assert cluster.files() == []


# ---- uninstalling Cilium ---------------------------------------------------------------------------

class TestUninstall:
    def test_without_cni_uninstall_05_cilium_stays_and_new_pods_never_start(self, cluster: Cluster) -> None:
        cilium_config(cluster.store)
        cluster.start_aws_node()
        cluster.start_cilium()
        before = cluster.run_pod("before")
        cluster.store.delete(DAEMONSETS, "kube-system", "cilium")
        cluster.store.delete(CONFIGMAPS, "kube-system", "cilium-config")
        add_pod(cluster.store, "after", cluster.node)
        settle(cluster.chain, 0.3)
        assert agent_pods(cluster.store, "cilium") == []
        assert cluster.files() == [CILIUM, AWS_BAK], "the preStop hook left the directory alone"
        assert cluster.agent_ready("aws-node") and node_ready(cluster.store, cluster.node)
        assert waits_for_its_network(cluster.store, "after"), "05-cilium sorts first; no Cilium to wire it"
        assert pod_ready(pod(cluster.store, "before")) and cni_of(before) == "cilium", "wired pods keep running"

    @pytest.mark.parametrize("config_map_deleted_first", [pytest.param(False, id="daemonset-deleted"),
                                                          pytest.param(True, id="configmap-deleted-first")])
    def test_with_cni_uninstall_true_the_node_goes_back_to_aws_cni(self, cluster: Cluster,
                                                                   config_map_deleted_first: bool) -> None:
        cilium_config(cluster.store)
        cluster.start_aws_node()
        cluster.start_cilium()
        set_uninstall(cluster.store, "true")
        settle(cluster.chain, 0.05)  # the kubelet syncs the agent's mounted ConfigMap
        if config_map_deleted_first:
            cluster.store.delete(CONFIGMAPS, "kube-system", "cilium-config")
            settle(cluster.chain, 0.05)
        cluster.store.delete(DAEMONSETS, "kube-system", "cilium")
        cluster.until_files([AWS])
        assert cni_of(cluster.run_pod("after")) == "aws-cni"

    def test_the_hook_reads_what_the_agent_mounted_when_it_stopped(self, cluster: Cluster) -> None:
        cilium_config(cluster.store)
        cluster.start_aws_node()
        cluster.start_cilium()
        cluster.store.delete(DAEMONSETS, "kube-system", "cilium")
        set_uninstall(cluster.store, "true")
        settle(cluster.chain, 0.2)
        assert cluster.files() == [CILIUM, AWS_BAK], "set after the agent stopped: too late"

    def test_cni_uninstall_false_is_not_true(self, cluster: Cluster) -> None:
        cilium_config(cluster.store, **{"cni-uninstall": "false"})
        cluster.start_aws_node()
        cluster.start_cilium()
        cluster.store.delete(DAEMONSETS, "kube-system", "cilium")
        settle(cluster.chain, 0.2)
        assert cluster.files() == [CILIUM, AWS_BAK]

    def test_a_restarted_agent_keeps_the_node_on_cilium(self, cluster: Cluster) -> None:
        """What ``cni.uninstall=false`` is for: pods created while the agent restarts wait for it."""
        cilium_config(cluster.store)
        cluster.start_aws_node()
        cluster.start_cilium()
        [agent] = agent_pods(cluster.store, "cilium")
        cluster.store.delete(PODS, "kube-system", agent["metadata"]["name"])
        add_pod(cluster.store, "during", cluster.node)
        cluster.kubelet.reconcile()
        assert cluster.files() == [CILIUM, AWS_BAK] and waits_for_its_network(cluster.store, "during")
        cluster.until(lambda: pod_ready(pod(cluster.store, "during")), "during Ready")
        assert cni_of(pod(cluster.store, "during")) == "cilium"


# ---- nodes -----------------------------------------------------------------------------------------

class TestNodes:
    def test_a_deleted_node_loses_its_directory(self, cluster: Cluster) -> None:
        cluster.start_aws_node()
        cluster.store.delete(NODES, None, cluster.node)
        cluster.kubelet.reconcile()
        assert cluster.kubelet.cni_dirs.snapshot() == {}

    def test_a_node_replaced_under_the_same_name_starts_empty(self, cluster: Cluster) -> None:
        cluster.start_aws_node()
        node = cluster.store.must_get(NODES, None, cluster.node)
        cluster.store.delete(NODES, None, cluster.node)
        cluster.store.create(NODES, {"metadata": {"name": cluster.node, "labels": node["metadata"]["labels"]},
                                     "spec": node["spec"], "status": node["status"]})
        cluster.kubelet.reconcile()
        assert cluster.files() == []

    def test_every_node_has_its_own_directory(self, store: Store, faults: Faults) -> None:
        cluster = Cluster(store, faults)
        other = add_node(store, 5)
        cilium_config(store)
        agent_daemonset(store, "aws-node", node=cluster.node)
        agent_daemonset(store, "cilium", node=other)
        run_until(cluster.chain, lambda: cluster.kubelet.cni_dirs.snapshot() == {cluster.node: [AWS],
                                                                                  other: [CILIUM]},
                  what="one file per node")


# ---- the chart and the twin ------------------------------------------------------------------------

@pytest.mark.parametrize(("uninstall", "data"), [pytest.param(None, None, id="default-unset"),
                                                 pytest.param(False, None, id="false-unset"),
                                                 pytest.param(True, "true", id="true")])
def test_the_chart_renders_cni_uninstall_only_when_set(uninstall: bool | None, data: str | None) -> None:
    overrides = {} if uninstall is None else {"cni": {"uninstall": uninstall}}
    values = cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1", overrides=overrides)
    [config] = [o for o in cilium.render(CHART, values) if o["metadata"]["name"] == "cilium-config"]
    assert config["data"].get("cni-uninstall") == data
    assert config["data"]["cni-exclusive"] == "true"


def admin_call(twin: Twin, path: str, method: str = "GET") -> tuple[int, object]:
    req = urllib.request.Request(twin.kube_url + path, method=method,
                                 headers={"Authorization": f"Bearer {twin.token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_twin_answers_every_nodes_directory(twin: Twin) -> None:
    expected = {n["metadata"]["name"]: [AWS] for n in twin.store.iter_all(NODES)}
    assert len(expected) == 3
    twin.wait_for(lambda: twin.cni_configs() == expected, 5, "aws-node's file on every node")
    assert admin_call(twin, "/_twin/cni") == (200, expected)
    assert admin_call(twin, "/_twin/cni", "DELETE")[0] == 405
