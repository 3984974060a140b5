"""The Cilium values the DAG installs with: the runbook's values, adapted to current charts, then overrides.

Covers: every key the runbook sets is present with the runbook's value (except the adapted ones);
``tunnel: disabled`` becomes ``routingMode: native``; ``cluster.name`` is derived as eksctl names the
cluster; the egress interface is a parameter; the agents' node affinity is exactly the runbook's;
overrides deep-merge (maps merge, lists and scalars replace, ``None`` deletes); the function is pure.
Also the pure helpers of ``cilium.py``: Helm's release encoding round-trips, the install order puts
kinds where Helm puts them, and the diff that decides "unchanged" ignores server-added fields.
"""

from __future__ import annotations

import base64
import gzip
import json

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
                 lambda v: v["hubble"] == {"enabled": True, "relay": {"enabled": False}}, id="relay-off"),
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


def test_release_encoding_is_helms() -> None:
    body = {"name": "cilium", "version": 3, "config": {"a": 1}}
    encoded = cilium.encode_release(body)
    assert json.loads(gzip.decompress(base64.b64decode(encoded))) == body
    assert cilium.decode_release(encoded) == body
    assert cilium.decode_release(base64.b64encode(json.dumps(body).encode()).decode()) == body, "plain json too"
    assert cilium.secret_name("cilium", 3) == "sh.helm.release.v1.cilium.v3"


def test_install_order_is_helms() -> None:
    kinds = ["Deployment", "CiliumNode", "ConfigMap", "Service", "ClusterRoleBinding", "DaemonSet",
             "ServiceAccount", "ClusterRole", "Alpha"]
    docs = [(f"t/{i}", {"kind": k}) for i, k in enumerate(kinds)]
    ordered = [d["kind"] for _, d in cilium.sort_install_order(docs)]
    assert ordered == ["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service",
                       "DaemonSet", "Deployment", "Alpha", "CiliumNode"]


@pytest.mark.parametrize(("current", "desired", "differs"), [
    pytest.param({"spec": {"a": 1, "defaulted": "x"}}, {"spec": {"a": 1}}, False, id="server-defaults-ignored"),
    pytest.param({"spec": {"a": 1}}, {"spec": {"a": 2}}, True, id="scalar-changed"),
    pytest.param({"spec": {"l": [{"n": 1, "extra": 0}]}}, {"spec": {"l": [{"n": 1}]}}, False,
                 id="list-items-may-carry-defaults"),
    pytest.param({"spec": {"l": [1, 2]}}, {"spec": {"l": [1]}}, True, id="list-length-differs"),
    pytest.param({"spec": {}}, {"spec": {"resources": {}}}, False, id="empty-map-dropped-by-server"),
    pytest.param({"data": {"k": "0"}}, {"data": {"k": "15"}}, True, id="configmap-value"),
])
def test_differences(current: dict, desired: dict, differs: bool) -> None:
    assert bool(cilium._differences(current, desired)) is differs
