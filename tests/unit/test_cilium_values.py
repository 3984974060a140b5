"""The Cilium values the DAG installs with: the runbook's values, adapted to current charts, then overrides.

Covers: every key the runbook sets is present with the runbook's value (except the adapted ones);
``tunnel: disabled`` becomes ``routingMode: native``; ``cluster.name`` is derived as eksctl names the
cluster; the egress interface is a parameter; the agents' node affinity is exactly the runbook's;
overrides deep-merge (maps merge, lists and scalars replace, ``None`` deletes); the function is pure.
Every other Cilium component (envoy, operator, Hubble Relay) carries the same fence in its required
node affinity, beside the chart's own pod (anti-)affinities.
"""

from __future__ import annotations

import pytest
import yaml

from cilium_migration import cilium

RUNBOOK_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}]}
            ]
        }
    }
}


def values(**overrides: object) -> dict:
    return cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1", **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param("cluster.name", "dc-migrate-us-west-1-eksctl-io", id="cluster-name-as-runbook"),
    pytest.param("egressMasqueradeInterfaces", "eth0", id="egress-interface-default"),
    pytest.param("eni.enabled", True, id="eni"),
    pytest.param("ipam.mode", "eni", id="ipam-eni"),
    pytest.param("bpf.hostLegacyRouting", True, id="host-legacy-routing"),
    pytest.param("operator.replicas", 1, id="one-operator"),
    pytest.param("operator.unmanagedPodWatcher.restart", False, id="watcher-off"),
    pytest.param("serviceAccounts.cilium.name", "cilium", id="agent-sa"),
    pytest.param("serviceAccounts.operator.name", "cilium-operator", id="operator-sa"),
    pytest.param("hubble.enabled", True, id="hubble"),
    pytest.param("hubble.relay.enabled", True, id="relay"),
    pytest.param("routingMode", "native", id="tunnel-disabled-is-native-routing"),
    pytest.param("operator.rollOutPods", True, id="operator-rolls-on-config-change"),
    pytest.param("rollOutCiliumPods", True, id="agents-roll-on-config-change"),
])
def test_runbook_keys(path: str, expected: object) -> None:
    node: object = values()
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"{path} missing"
        node = node[part]
    assert node == expected


def test_every_runbook_key_is_kept_or_adapted() -> None:
    runbook = yaml.safe_load(cilium.VALUES_FILE.read_text())
    rendered = values()

    def leaves(d: dict, prefix: str = "") -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    adapted = {"tunnel", "cluster.name"}
    got = leaves(rendered)
    for key, value in leaves(runbook).items():
        if key not in adapted:
            assert got.get(key) == value, key
    assert "tunnel" not in rendered, "current charts removed 'tunnel'; it must not be passed on"


def test_affinity_is_exactly_the_runbooks() -> None:
    assert values()["affinity"] == RUNBOOK_AFFINITY


FENCE = {"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}


@pytest.mark.parametrize("path", [
    pytest.param("envoy.affinity", id="cilium-envoy"),
    pytest.param("operator.affinity", id="cilium-operator"),
    pytest.param("hubble.relay.affinity", id="hubble-relay"),
])
def test_every_cilium_component_is_fenced_off_aws_cni_nodes(path: str) -> None:
    node = values()
    for key in path.split("."):
        node = node[key]
    terms = node["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms and all(FENCE in term["matchExpressions"] for term in terms), "every term must carry the fence"
    assert set(node) == {"nodeAffinity"}, "the chart's pod (anti-)affinities are left to Helm's merge"


def test_envoy_keeps_its_own_no_schedule_term() -> None:
    terms = values()["envoy"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "cilium.io/no-schedule", "operator": "NotIn", "values": ["true"]} in \
        terms["nodeSelectorTerms"][0]["matchExpressions"]


@pytest.mark.parametrize(("name", "region", "expected"), [
    pytest.param("dc-migrate", "us-west-1", "dc-migrate-us-west-1-eksctl-io", id="runbook"),
    pytest.param("Prod_EKS", "eu-central-1", "prod-eks-eu-central-1-eksctl-io", id="sanitised"),
])
def test_cluster_name_follows_eksctl(name: str, region: str, expected: str) -> None:
    assert cilium.runbook_values(cluster_name=name, region=region)["cluster"]["name"] == expected


def test_egress_interface_is_a_parameter() -> None:
    assert values(egress_interface="ens5")["egressMasqueradeInterfaces"] == "ens5"


@pytest.mark.parametrize(("overrides", "check"), [
    pytest.param({"operator": {"unmanagedPodWatcher": {"restart": True}}},
                 lambda v: v["operator"]["unmanagedPodWatcher"] == {"restart": True} and v["operator"]["replicas"] == 1,
                 id="nested-map-merges-keeping-siblings"),
    pytest.param({"hubble": {"relay": {"enabled": False}}},
                 lambda v: v["hubble"]["enabled"] and v["hubble"]["relay"]["enabled"] is False, id="relay-off"),
    pytest.param({"tolerations": [{"key": "x", "operator": "Exists"}]},
                 lambda v: v["tolerations"] == [{"key": "x", "operator": "Exists"}], id="list-replaces"),
    pytest.param({"bpf": None}, lambda v: "bpf" not in v, id="none-deletes"),
    pytest.param({"cluster": {"name": "mine"}}, lambda v: v["cluster"]["name"] == "mine", id="name-override"),
])
def test_overrides_deep_merge(overrides: dict, check: object) -> None:
    assert check(values(overrides=overrides))  # type: ignore[operator]


def test_pure() -> None:
    overrides = {"tolerations": [{"operator": "Exists"}], "operator": {"unmanagedPodWatcher": {"restart": True}}}
    result = values(overrides=overrides)
    overrides["tolerations"][0]["operator"] = "Equal"  # type: ignore[index]
    result["operator"]["replicas"] = 9
    assert result["tolerations"] == [{"operator": "Exists"}], "the result shares no structure with overrides"
    assert overrides["operator"] == {"unmanagedPodWatcher": {"restart": True}}, "overrides are not modified"
    assert values()["operator"]["replicas"] == 1
