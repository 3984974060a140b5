"""Scenarios: the default one is the runbook's cluster; YAML is validated; loading creates the objects.

Covers: the default scenario's EKS side and kube-system/default objects (aws-node's "before" affinity
exactly), schema validation errors, lookup by name or path, the generator's node and pod counts, and
``apply_objects`` creating namespaces and objects in the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from twin.config import Timing
from twin.resources import DAEMONSETS, DEPLOYMENTS, NAMESPACES, PDBS, SERVICES
from twin.scenario import Scenario, apply_objects, load_scenario, scenario_from_yaml
from twin.scenarios.generate import generate_scenario
from twin.store import Store

RUNBOOK_BEFORE_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]},
                        {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]},
                    ]
                }
            ]
        }
    }
}


def _object(scenario: Scenario, kind: str, namespace: str, name: str) -> dict:
    [obj] = [
        o
        for o in scenario.objects
        if o["kind"] == kind and o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
    ]
    return obj


class TestDefaultScenario:
    def test_is_the_runbooks_cluster(self) -> None:
        s = load_scenario("default")
        assert (s.cluster.name, s.cluster.region, s.cluster.version) == ("dc-migrate", "us-west-1", "1.30")
        groups = {g.name: g for g in s.nodegroups}
        assert (groups["ng-1"].desired, groups["ng-1"].min, groups["ng-1"].max, groups["ng-1"].taints) == (
            3,
            3,
            3,
            [],
        )
        cilium = groups["ng-cilium"]
        assert (cilium.instanceType, cilium.desired, cilium.min, cilium.max) == ("m5.large", 0, 0, 3)
        assert [t.eks() for t in cilium.taints] == [
            {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_EXECUTE"}
        ]

    def test_aws_node_has_the_runbooks_before_affinity(self) -> None:
        ds = _object(load_scenario("default"), "DaemonSet", "kube-system", "aws-node")
        pod = ds["spec"]["template"]["spec"]
        assert pod["affinity"] == RUNBOOK_BEFORE_AFFINITY
        assert pod["hostNetwork"] is True and pod["tolerations"] == [{"operator": "Exists"}]
        assert ds["spec"]["updateStrategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "10%"},
        }
        assert ds["metadata"]["labels"]["k8s-app"] == "aws-node"
        assert pod["containers"][0]["image"].startswith(
            "602401143452.dkr.ecr.us-west-1.amazonaws.com/amazon-k8s-cni:v1.18."
        )

    @pytest.mark.parametrize(
        ("kind", "namespace", "name", "check"),
        [
            pytest.param(
                "DaemonSet",
                "kube-system",
                "kube-proxy",
                lambda o: o["spec"]["template"]["spec"]["hostNetwork"],
                id="kube-proxy-host-network",
            ),
            pytest.param(
                "Deployment",
                "kube-system",
                "coredns",
                lambda o: (
                    o["spec"]["replicas"] == 2
                    and o["spec"]["template"]["metadata"]["labels"]["k8s-app"] == "kube-dns"
                ),
                id="coredns",
            ),
            pytest.param(
                "PodDisruptionBudget",
                "kube-system",
                "coredns",
                lambda o: o["spec"]["maxUnavailable"] == 1,
                id="coredns-pdb",
            ),
            pytest.param("Deployment", "default", "web", lambda o: o["spec"]["replicas"] == 4, id="web"),
            pytest.param(
                "PodDisruptionBudget",
                "default",
                "web",
                lambda o: o["spec"]["minAvailable"] == 3,
                id="web-pdb",
            ),
            pytest.param(
                "Service", "default", "web", lambda o: o["spec"]["selector"] == {"app": "web"}, id="web-svc"
            ),
            pytest.param(
                "StatefulSet",
                "default",
                "db",
                lambda o: o["spec"]["replicas"] == 2 and o["spec"]["serviceName"] == "db",
                id="db",
            ),
            pytest.param(
                "PodDisruptionBudget", "default", "db", lambda o: o["spec"]["maxUnavailable"] == 1, id="db-pdb"
            ),
        ],
    )
    def test_addons_and_sample_workload(self, kind: str, namespace: str, name: str, check) -> None:
        assert check(_object(load_scenario("default"), kind, namespace, name))


class TestValidation:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param(
                "nodegroups: [{name: a, desired: 4, min: 0, max: 3}]",
                "min <= desired <= max",
                id="desired>max",
            ),
            pytest.param(
                "nodegroups: [{name: a, desired: 1, max: 3, taints: [{key: k, effect: Sometimes}]}]",
                "unknown taint effect",
                id="bad-effect",
            ),
            pytest.param("faults: {no_such_fault: true}", "unknown fault", id="unknown-fault"),
            pytest.param("timing: {warp_s: 1}", "unknown timing", id="unknown-timing"),
            pytest.param(
                "objects: [{apiVersion: v1, kind: Widget, metadata: {name: w}}]", "does not serve", id="kind"
            ),
            pytest.param(
                "objects: [{apiVersion: v1, kind: ConfigMap, metadata: {}}]",
                "without metadata.name",
                id="no-name",
            ),
            pytest.param("clusters: {}", "Extra inputs", id="typo-top-level"),
        ],
    )
    def test_rejects(self, text: str, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            scenario_from_yaml(text)

    def test_kubernetes_taint_effects_become_eks_effects(self) -> None:
        s = scenario_from_yaml(
            "nodegroups: [{name: a, desired: 0, max: 1, taints: [{key: k, effect: NoExecute}]}]"
        )
        assert s.nodegroups[0].taints[0].effect == "NO_EXECUTE"

    def test_faults_and_timing_overrides(self) -> None:
        s = scenario_from_yaml("faults: {cross_cni_broken: true}\ntiming: {node_provision_s: 7}")
        assert s.make_faults().cross_cni_broken is True
        assert s.make_timing(Timing(pod_start_s=2)) == Timing(pod_start_s=2, node_provision_s=7)


class TestLookup:
    def test_by_path(self, tmp_path: Path) -> None:
        path = tmp_path / "mine.yaml"
        path.write_text("cluster: {name: mine, region: eu-west-1}\n")
        assert load_scenario(str(path)).cluster.name == "mine"

    def test_unknown_name_lists_the_built_in_ones(self) -> None:
        with pytest.raises(FileNotFoundError, match="built-in: .*default"):
            load_scenario("no-such-scenario")


class TestApplyObjects:
    def test_creates_namespaces_then_objects(self) -> None:
        store = Store()
        apply_objects(store, load_scenario("default"))
        names = {ns["metadata"]["name"] for ns in store.list(NAMESPACES)[0]}
        assert names >= {"default", "kube-system", "kube-public", "kube-node-lease"}
        assert {d["metadata"]["name"] for d in store.list(DAEMONSETS, "kube-system")[0]} == {
            "aws-node",
            "kube-proxy",
        }
        assert store.must_get(DEPLOYMENTS, "default", "web")["metadata"]["generation"] == 1
        assert store.get(PDBS, "kube-system", "coredns") is not None
        assert store.get(SERVICES, "default", "kubernetes") is not None

    def test_a_namespace_an_object_names_is_created(self) -> None:
        store = Store()
        apply_objects(
            store,
            scenario_from_yaml(
                "objects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: team-a}}]"
            ),
        )
        assert store.get(NAMESPACES, None, "team-a") is not None

    def test_duplicate_object_is_an_error_naming_it(self) -> None:
        cm = "{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}"
        with pytest.raises(ValueError, match="ConfigMap c"):
            apply_objects(Store(), scenario_from_yaml(f"objects: [{cm}, {cm}]"))


class TestGenerator:
    @pytest.mark.parametrize(
        ("nodes", "pods", "groups"),
        [
            pytest.param(10, 100, ["ng-1", "ng-cilium"], id="small"),
            pytest.param(1000, 20000, ["ng-1", "ng-2", "ng-3", "ng-4", "ng-cilium"], id="benchmark"),
        ],
    )
    def test_counts(self, nodes: int, pods: int, groups: list[str]) -> None:
        s = generate_scenario(nodes, pods)
        assert [g.name for g in s.nodegroups] == groups
        assert sum(g.desired for g in s.nodegroups) == nodes
        replicas = sum(o["spec"]["replicas"] for o in s.objects if o["kind"] in ("Deployment", "StatefulSet"))
        assert replicas + 2 * nodes == pods  # aws-node and kube-proxy on every node
