"""In place: Cilium installed with Helm beside the AWS VPC CNI on the same nodes (the runbook's In Place
strategy), on a running twin of the default scenario.

Specification (Cilium 1.16 with ``cilium_migration.cilium.in_place_values``: no node fence,
``cni.exclusive`` off, ENI IPAM, the unmanaged-pod watcher off), in the order the tests share one twin:
- every node runs both agents, aws-node and the Cilium agent; with ``cni-exclusive: "false"`` the agent
  writes ``05-cilium.conflist`` and leaves ``10-aws.conflist`` as it is (no ``.cilium_bak``);
- the pods from before Cilium keep aws-cni; a new pod is wired by Cilium, whose config sorts first; a
  rollout restart of a Deployment, a StatefulSet or a DaemonSet moves its pods onto Cilium;
- CiliumEndpoints exist for exactly the Cilium-wired pods, each with its pod's IP and node;
- goldpinger as the DAG deploys it (``cilium_migration.goldpinger``), its DaemonSet left on aws-cni and
  its Deployment restarted onto Cilium: every pair reaches the other, on one node and across nodes;
  ``faults.cross_cni_broken`` fails exactly the pairs of different CNIs, on one node too;
- rollback: ``cni.uninstall=true`` armed, then ``helm uninstall``: ``10-aws.conflist`` is again the only
  config on every node, and restarted pods are wired by aws-cni again;
- decommission (Cilium installed again, the aws-node DaemonSet deleted): ``10-aws.conflist`` stays on
  every node (aws-node never removes it), the Cilium-wired pods run on untouched, new pods still get
  Cilium.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from cilium_migration import checks, cilium, goldpinger
from cilium_migration.clients import Clients
from cilium_migration.readiness import RESTARTED_AT
from twin.cluster import Twin
from twin.controllers.base import AWS_CNI, CILIUM, CNI_ANNOTATION

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "twin" / "charts" / "cilium"
NS, SYSTEM = "default", "kube-system"
CILIUM_CONF, AWS_CONF = "05-cilium.conflist", "10-aws.conflist"
VALUES = cilium.in_place_values(cluster_name="dc-migrate", region="us-west-1")
TIMEOUT = 30.0
GOLDPINGER_PODS = "app.kubernetes.io/name=goldpinger"

Obj = dict[str, Any]


# ---- reading the cluster through the API ------------------------------------------------------------

@pytest.fixture(scope="module")
def api(twin: Twin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[k8s.ApiClient]:
    """The official client over HTTPS with the admin token, as Helm needs it (no token over plain HTTP)."""
    path = tmp_path_factory.mktemp("in-place") / "kubeconfig"
    path.write_text(yaml.safe_dump(twin.kubeconfig()))
    client = k8s_config.new_client_from_config(str(path))
    yield client
    client.close()


@pytest.fixture(scope="module")
def clients(api: k8s.ApiClient) -> Clients:
    return Clients(api_client=api)


def listed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Obj]:
    return list(json.loads(call(*args, _preload_content=False, **kwargs).data)["items"])


def pods(api: k8s.ApiClient, namespace: str | None = None, selector: str = "") -> list[Obj]:
    """The pods not being deleted, of one namespace or all."""
    core = k8s.CoreV1Api(api)
    found = (listed(core.list_namespaced_pod, namespace, label_selector=selector) if namespace
             else listed(core.list_pod_for_all_namespaces, label_selector=selector))
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def node_names(api: k8s.ApiClient) -> list[str]:
    return sorted(n["metadata"]["name"] for n in listed(k8s.CoreV1Api(api).list_node))


def cni_of(pod: Obj) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(CNI_ANNOTATION)


def ready(obj: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def running_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and ready(pod)


def node_of(pod: Obj) -> str:
    return str(pod["spec"].get("nodeName") or "")


def owner_kind(pod: Obj) -> str:
    return str(((pod["metadata"].get("ownerReferences") or [{}])[0]).get("kind", ""))


def key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def agents(api: k8s.ApiClient, app: str) -> dict[str, Obj]:
    """The Running, Ready agent pods (``k8s-app=<app>``) by node."""
    return {node_of(p): p for p in pods(api, SYSTEM, f"k8s-app={app}") if running_ready(p)}


def endpoints(api: k8s.ApiClient) -> dict[tuple[str, str], Obj]:
    ceps = listed(k8s.CustomObjectsApi(api).list_cluster_custom_object, "cilium.io", "v2", "ciliumendpoints")
    return {key(c): c for c in ceps}


def cilium_wired(api: k8s.ApiClient) -> dict[tuple[str, str], Obj]:
    """The Running pods the Cilium CNI wired."""
    return {key(p): p for p in pods(api) if cni_of(p) == CILIUM and p["status"].get("phase") == "Running"}


def wait(twin: Twin, predicate: Callable[[], bool], what: str) -> None:
    twin.wait_for(predicate, TIMEOUT, what)


# ---- acting as the DAG and as kubectl ------------------------------------------------------------------

def install_cilium(twin: Twin, api: k8s.ApiClient) -> None:
    """``helm upgrade --install`` with the in-place values, then wait for a Ready agent and its config on
    every node."""
    cilium.deploy(api, CHART, VALUES)
    nodes = node_names(api)
    wait(twin, lambda: sorted(agents(api, "cilium")) == nodes
         and all(CILIUM_CONF in files for files in twin.cni_configs().values()),
         "a Ready Cilium agent and 05-cilium.conflist on every node")


def restart(api: k8s.ApiClient, kind: str, name: str, namespace: str = NS) -> None:
    """``kubectl rollout restart``: a new ``restartedAt`` in the pod template."""
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: datetime.now(UTC).isoformat()}}}}}
    apps = k8s.AppsV1Api(api)
    patch = {"Deployment": apps.patch_namespaced_deployment, "StatefulSet": apps.patch_namespaced_stateful_set,
             "DaemonSet": apps.patch_namespaced_daemon_set}[kind]
    patch(name, namespace, body, _preload_content=False)


def workload_pods(api: k8s.ApiClient, kind: str, name: str, namespace: str = NS) -> list[Obj]:
    """The pods of a Deployment, StatefulSet or DaemonSet (by its selector and the kind of its pods' owner)."""
    apps = k8s.AppsV1Api(api)
    read = {"Deployment": apps.read_namespaced_deployment, "StatefulSet": apps.read_namespaced_stateful_set,
            "DaemonSet": apps.read_namespaced_daemon_set}[kind]
    workload = json.loads(read(name, namespace, _preload_content=False).data)
    selector = ",".join(f"{k}={v}" for k, v in workload["spec"]["selector"]["matchLabels"].items())
    owner = "ReplicaSet" if kind == "Deployment" else kind
    return [p for p in pods(api, namespace, selector) if owner_kind(p) == owner]


def restarted_onto(twin: Twin, api: k8s.ApiClient, kind: str, name: str, count: int, cni: str) -> list[Obj]:
    """Restart the workload and wait until its ``count`` pods are all new, Ready and wired by ``cni``."""
    old = {p["metadata"]["uid"] for p in workload_pods(api, kind, name)}
    restart(api, kind, name)

    def done() -> bool:
        now = workload_pods(api, kind, name)
        return len(now) == count and all(p["metadata"]["uid"] not in old and running_ready(p)
                                         and cni_of(p) == cni for p in now)

    wait(twin, done, f"{kind} {name} restarted onto {cni}")
    return workload_pods(api, kind, name)


def bare_pods(twin: Twin, api: k8s.ApiClient, prefix: str) -> dict[str, Obj]:
    """A new pod bound to each node, once all are Ready: node name -> pod."""
    core = k8s.CoreV1Api(api)
    nodes = node_names(api)
    for i, node in enumerate(nodes):
        core.create_namespaced_pod(NS, {"metadata": {"name": f"{prefix}-{i}", "labels": {"test": prefix}},
                                        "spec": {"nodeName": node,
                                                 "containers": [{"name": "c", "image": "busybox:1"}]}},
                                   _preload_content=False)
    wait(twin, lambda: sum(running_ready(p) for p in pods(api, NS, f"test={prefix}")) == len(nodes),
         f"the {prefix} pods Ready")
    return {node_of(p): p for p in pods(api, NS, f"test={prefix}")}


def delete_bare_pods(api: k8s.ApiClient, prefix: str) -> None:
    k8s.CoreV1Api(api).delete_collection_namespaced_pod(NS, label_selector=f"test={prefix}", _preload_content=False)


def endpoints_match_cilium_pods(twin: Twin, api: k8s.ApiClient) -> None:
    """Wait until the CiliumEndpoints are exactly the Cilium-wired pods, then check each one's address."""
    wait(twin, lambda: set(endpoints(api)) == set(cilium_wired(api)), "a CiliumEndpoint per Cilium-wired pod")
    wired = cilium_wired(api)
    for name, cep in endpoints(api).items():
        networking = cep["status"]["networking"]
        assert networking["addressing"][0]["ipv4"] == wired[name]["status"]["podIP"], name
        assert networking["node"] == wired[name]["status"]["hostIP"], name
        assert cep["metadata"]["ownerReferences"][0]["uid"] == wired[name]["metadata"]["uid"], name


# ---- the cluster before and after Cilium --------------------------------------------------------------

@pytest.fixture(scope="module")
def before(twin: Twin, api: k8s.ApiClient, clients: Clients) -> dict[str, str]:
    """goldpinger deployed as the DAG deploys it, before Cilium; then every wired pod: uid -> its CNI."""
    goldpinger.deploy(clients, NS)
    wait(twin, lambda: sum(running_ready(p) for p in pods(api, NS, GOLDPINGER_PODS)) == 3 + 5,
         "goldpinger's 3 DaemonSet and 5 Deployment pods Ready")
    return {p["metadata"]["uid"]: str(cni_of(p)) for p in pods(api) if cni_of(p)}


@pytest.fixture(scope="module")
def in_place(twin: Twin, api: k8s.ApiClient, before: dict[str, str]) -> None:
    install_cilium(twin, api)


@pytest.fixture(scope="class")
def new_pods(twin: Twin, api: k8s.ApiClient, in_place: None) -> Iterator[dict[str, Obj]]:
    """A new pod on each node once Cilium runs beside aws-node (deleted after the class): node -> pod."""
    yield bare_pods(twin, api, "new")
    delete_bare_pods(api, "new")


@pytest.mark.usefixtures("in_place")
class TestBothCnisOnEveryNode:
    def test_before_cilium_every_pod_is_wired_by_aws_cni(self, before: dict[str, str]) -> None:
        assert len(before) == 4 + 2 + 2 + 8, "web, db, coredns, goldpinger"
        assert set(before.values()) == {AWS_CNI}

    def test_every_node_runs_aws_node_and_the_cilium_agent_both_ready(self, api: k8s.ApiClient) -> None:
        nodes = node_names(api)
        assert len(nodes) == 3
        assert sorted(agents(api, "aws-node")) == nodes
        assert sorted(agents(api, "cilium")) == nodes
        assert all(ready(n) for n in listed(k8s.CoreV1Api(api).list_node))

    def test_without_cni_exclusive_the_agent_leaves_10_aws_beside_05_cilium(
            self, twin: Twin, api: k8s.ApiClient) -> None:
        config = k8s.CoreV1Api(api).read_namespaced_config_map("cilium-config", SYSTEM)
        assert config.data["cni-exclusive"] == "false"
        assert twin.cni_configs() == {n: [CILIUM_CONF, AWS_CONF] for n in node_names(api)}, "no .cilium_bak"

    def test_the_pods_from_before_cilium_keep_aws_cni(self, api: k8s.ApiClient, before: dict[str, str]) -> None:
        now = {p["metadata"]["uid"]: p for p in pods(api)}
        assert set(before) <= set(now), "no pod was replaced by installing Cilium"
        assert {cni_of(now[uid]) for uid in before} == {AWS_CNI}
        assert all(running_ready(now[uid]) for uid in before)

    def test_a_new_pod_is_wired_by_cilium_whose_config_sorts_first(self, api: k8s.ApiClient,
                                                                    new_pods: dict[str, Obj]) -> None:
        assert sorted(new_pods) == node_names(api)
        assert {cni_of(p) for p in new_pods.values()} == {CILIUM}

    def test_ciliumendpoints_exist_exactly_for_the_cilium_wired_pods(self, twin: Twin, api: k8s.ApiClient,
                                                                     new_pods: dict[str, Obj]) -> None:
        endpoints_match_cilium_pods(twin, api)
        ceps = set(endpoints(api))
        assert {key(p) for p in new_pods.values()} <= ceps
        assert not {key(p) for p in pods(api) if cni_of(p) == AWS_CNI} & ceps


# ---- goldpinger across the two CNIs -------------------------------------------------------------------

@pytest.fixture(scope="class")
def mixed_mesh(twin: Twin, api: k8s.ApiClient, clients: Clients, in_place: None) -> dict[str, Obj]:
    """goldpinger's Deployment restarted as the DAG restarts it (onto Cilium), its DaemonSet left on aws-cni:
    instance name -> pod."""
    goldpinger.restart(clients.apps, NS, "Deployment", "in-place/restart_goldpinger")

    def mixed() -> bool:
        now = pods(api, NS, GOLDPINGER_PODS)
        return (len(now) == 8 and all(running_ready(p) for p in now)
                and sorted(str(cni_of(p)) for p in now) == [AWS_CNI] * 3 + [CILIUM] * 5
                and all(cni_of(p) == (AWS_CNI if owner_kind(p) == "DaemonSet" else CILIUM) for p in now))

    wait(twin, mixed, "goldpinger's Deployment on Cilium, its DaemonSet on aws-cni")
    return {p["metadata"]["name"]: p for p in pods(api, NS, GOLDPINGER_PODS)}


def pair_kinds(mesh: dict[str, Obj], src: str, dst: str) -> tuple[bool, bool]:
    """(same node, same CNI) for a ping from ``src`` to ``dst``."""
    return node_of(mesh[src]) == node_of(mesh[dst]), cni_of(mesh[src]) == cni_of(mesh[dst])


class TestGoldpingerAcrossCnis:
    def test_pods_of_both_cnis_reach_each_other_on_one_node_and_across_nodes(
            self, twin: Twin, clients: Clients, mixed_mesh: dict[str, Obj]) -> None:
        twin.goldpinger.refresh(force=True)
        body = goldpinger.check_all(clients.core, NS)
        assert set(body["responses"]) == set(mixed_mesh)
        seen: set[tuple[bool, bool]] = set()
        for src, response in body["responses"].items():
            assert response["OK"] is True, src
            results = response["response"]["podResults"]
            assert set(results) == set(mixed_mesh), src
            for dst, result in results.items():
                assert result["OK"] is True and result["status-code"] == 200, (src, dst, result)
                assert result["PodIP"] == mixed_mesh[dst]["status"]["podIP"]
                seen.add(pair_kinds(mixed_mesh, src, dst))
        assert (True, False) in seen, "a pod reaching a pod of the other CNI on its own node"
        assert (False, False) in seen, "a pod reaching a pod of the other CNI on another node"

    def test_cross_cni_broken_fails_exactly_the_cross_cni_pairs_on_one_node_too(
            self, twin: Twin, clients: Clients, mixed_mesh: dict[str, Obj]) -> None:
        twin.faults.update({"cross_cni_broken": True})
        try:
            twin.goldpinger.refresh(force=True)
            failed: set[tuple[bool, bool]] = set()
            for src in mixed_mesh:
                view = twin.goldpinger.check(NS, pod=src)
                assert view is not None and set(view["podResults"]) == set(mixed_mesh), src
                for dst, result in view["podResults"].items():
                    same_node, same_cni = pair_kinds(mixed_mesh, src, dst)
                    assert result["OK"] is same_cni, (src, dst, result)
                    if not same_cni:
                        assert result["status-code"] == 504 and "context deadline exceeded" in result["error"]
                        failed.add((same_node, same_cni))
            assert failed == {(True, False), (False, False)}, "cross-CNI pairs fail on one node and across"
            body = goldpinger.check_all(clients.core, NS)
            server = twin.goldpinger.serving_instance(NS)
            assert server is not None
            for name, response in body["responses"].items():
                same_cni = cni_of(mixed_mesh[name]) == cni_of(server)
                assert response["OK"] is same_cni, name
                assert ("response" in response) is same_cni and ("error" in response) is not same_cni, name
        finally:
            twin.faults.update({"cross_cni_broken": False})
        twin.goldpinger.refresh(force=True)
        assert all(r["OK"] for src in mixed_mesh
                   for r in (twin.goldpinger.check(NS, pod=src) or {"podResults": {}})["podResults"].values())


# ---- rollout restarts -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("in_place", "mixed_mesh")
class TestRolloutRestartMovesPodsOntoCilium:
    @pytest.mark.parametrize(("kind", "name", "count"), [pytest.param("Deployment", "web", 4, id="deployment"),
                                                         pytest.param("StatefulSet", "db", 2, id="statefulset"),
                                                         pytest.param("DaemonSet", "goldpinger", 3, id="daemonset")])
    def test_a_rollout_restart_moves_the_pods_onto_cilium(self, twin: Twin, api: k8s.ApiClient, kind: str,
                                                          name: str, count: int) -> None:
        moved = restarted_onto(twin, api, kind, name, count, CILIUM)
        if kind == "DaemonSet":
            assert sorted(node_of(p) for p in moved) == node_names(api), "one per node"

    def test_the_pods_not_restarted_keep_aws_cni(self, api: k8s.ApiClient, before: dict[str, str]) -> None:
        coredns = pods(api, SYSTEM, "k8s-app=kube-dns")
        assert len(coredns) == 2 and all(p["metadata"]["uid"] in before for p in coredns)
        assert {cni_of(p) for p in coredns} == {AWS_CNI}

    def test_ciliumendpoints_follow_the_restarted_pods(self, twin: Twin, api: k8s.ApiClient) -> None:
        endpoints_match_cilium_pods(twin, api)
        names = {name for _, name in endpoints(api)}
        assert {p["metadata"]["name"] for p in workload_pods(api, "Deployment", "web")} <= names
        assert {"db-0", "db-1"} <= names
        assert not {p["metadata"]["name"] for p in pods(api, SYSTEM, "k8s-app=kube-dns")} & names


# ---- rollback: cni.uninstall armed, then helm uninstall -------------------------------------------------

@pytest.mark.usefixtures("in_place")
class TestRollback:
    def test_arming_cni_uninstall_restarts_the_agents_with_it(self, twin: Twin, api: k8s.ApiClient,
                                                              clients: Clients) -> None:
        changes = cilium.arm_cni_uninstall(api, CHART)
        config = next(c for c in changes if (c.kind, c.name) == ("ConfigMap", "cilium-config"))
        assert config.after is not None and config.after["data.cni-uninstall"] == "true"
        wait(twin, lambda: checks.run("cilium_cni_uninstall_armed", clients, namespace=SYSTEM,
                                      nodegroups=[]).status == checks.DONE,
             "every agent restarted with cni-uninstall")
        wait(twin, lambda: sorted(agents(api, "cilium")) == node_names(api), "the restarted agents Ready")

    def test_helm_uninstall_leaves_10_aws_as_the_only_config(self, twin: Twin, api: k8s.ApiClient) -> None:
        cilium.uninstall(api)
        nodes = node_names(api)
        wait(twin, lambda: twin.cni_configs() == {n: [AWS_CONF] for n in nodes}, "10-aws.conflist alone")
        assert pods(api, SYSTEM, "k8s-app=cilium") == []
        assert sorted(agents(api, "aws-node")) == nodes

    def test_restarted_pods_are_wired_by_aws_cni_again(self, twin: Twin, api: k8s.ApiClient) -> None:
        restarted_onto(twin, api, "Deployment", "web", 4, AWS_CNI)
        try:
            assert {cni_of(p) for p in bare_pods(twin, api, "after-rollback").values()} == {AWS_CNI}
        finally:
            delete_bare_pods(api, "after-rollback")


# ---- decommission: aws-node deleted beside Cilium ------------------------------------------------------

@pytest.fixture(scope="class")
def on_cilium(twin: Twin, api: k8s.ApiClient, in_place: None) -> dict[str, Obj]:
    """Cilium installed in place (again, after the rollback) and web restarted onto it: uid -> web pod."""
    install_cilium(twin, api)
    assert twin.cni_configs() == {n: [CILIUM_CONF, AWS_CONF] for n in node_names(api)}
    return {p["metadata"]["uid"]: p for p in restarted_onto(twin, api, "Deployment", "web", 4, CILIUM)}


class TestAwsNodeDeleted:
    def test_deleting_aws_node_leaves_10_aws_on_every_node(self, twin: Twin, api: k8s.ApiClient,
                                                           on_cilium: dict[str, Obj]) -> None:
        k8s.AppsV1Api(api).delete_namespaced_daemon_set("aws-node", SYSTEM, _preload_content=False)
        wait(twin, lambda: not pods(api, SYSTEM, "k8s-app=aws-node"), "aws-node's pods gone")
        nodes = node_names(api)
        time.sleep(10 * twin.timing.resync_s)  # the kubelets' passes after the pods went
        assert twin.cni_configs() == {n: [CILIUM_CONF, AWS_CONF] for n in nodes}, "aws-node never removes it"
        assert all(ready(n) for n in listed(k8s.CoreV1Api(api).list_node)), "the Cilium agents keep nodes Ready"

    def test_the_cilium_wired_pods_run_on_untouched(self, twin: Twin, api: k8s.ApiClient,
                                                    on_cilium: dict[str, Obj]) -> None:
        now = {p["metadata"]["uid"]: p for p in workload_pods(api, "Deployment", "web")}
        assert set(now) == set(on_cilium)
        for uid, pod in now.items():
            assert running_ready(pod) and cni_of(pod) == CILIUM
            assert pod["status"]["podIP"] == on_cilium[uid]["status"]["podIP"]
        endpoints_match_cilium_pods(twin, api)

    def test_new_pods_still_get_cilium(self, twin: Twin, api: k8s.ApiClient, on_cilium: dict[str, Obj]) -> None:
        try:
            assert {cni_of(p) for p in bare_pods(twin, api, "after-aws-node").values()} == {CILIUM}
        finally:
            delete_bare_pods(api, "after-aws-node")
        restarted_onto(twin, api, "StatefulSet", "db", 2, CILIUM)
